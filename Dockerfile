# Strand's container image: `docker build -t strand .` then
#   docker run -p 9092:9092 -v strand-data:/var/lib/strand strand
# The build stage compiles the `strand` binary (RocksDB's C++ included, about 20 minutes on
# two cores); the runtime stage holds only the binary and the C++ runtime it links.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p strand-broker --bin strand \
    && cp target/release/strand /strand

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/strand strand \
    && mkdir -p /var/lib/strand \
    && chown strand /var/lib/strand
COPY --from=build /strand /usr/local/bin/strand
USER strand
# Listen on every interface inside the container; set STRAND_ADVERTISED_ADDR to the address
# clients reach (the defaults advertise 0.0.0.0, which the node refuses).
ENV STRAND_DATA_DIR=/var/lib/strand \
    STRAND_LISTEN=0.0.0.0:9092 \
    STRAND_RAFT_LISTEN=0.0.0.0:19092 \
    STRAND_METRICS_LISTEN=0.0.0.0:10092 \
    STRAND_ADVERTISED_ADDR=localhost:9092
VOLUME ["/var/lib/strand"]
EXPOSE 9092 19092 10092
ENTRYPOINT ["/usr/local/bin/strand"]

# Strand: `make run` starts one node on 127.0.0.1:9092 (data in ./data); `make test` runs
# every test. Both install what is missing first.

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
STRAND := $(CARGO_TARGET_DIR)/release/strand
VENV := $(CURDIR)/.venv

.PHONY: run test build setup unit fuzz e2e lint fmt bench bench-full bench-produce disk-flat bench-lifecycle bench-move bench-attacks kafka-install bench-cluster cluster cluster-stop clean-data compat jepsen jepsen-smoke jepsen-selfcheck

setup:
	@scripts/setup.sh

build: setup
	cargo build --release --workspace --bins

run: build
	$(STRAND) --data-dir ./data

# Three local nodes in the background (Kafka on 127.0.0.1:9092-9094, data in
# ./data/cluster); returns once all serve. Control them with deploy/local-cluster.sh.
cluster: build
	STRAND_BIN=$(STRAND) deploy/local-cluster.sh start

cluster-stop:
	deploy/local-cluster.sh stop

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

test: build lint unit e2e jepsen-smoke jepsen-selfcheck

# The short Jepsen run CI makes: kill, pause and partition faults on one node or a leader
# for 90 s, nodes in network namespaces; it must stay valid with at least 2,000 acknowledged
# sends and 8 faults. (Ring and clients-cut partitions stop most traffic for their length;
# `make jepsen` runs them.)
# Every client's scenario against a fresh three-node cluster; writes docs/compatibility.md.
compat: build $(VENV)/.installed
	STRAND_BIN=$(STRAND) $(VENV)/bin/python tests/compat/report.py --out docs/compatibility.md

jepsen-smoke: build
	$(CARGO_TARGET_DIR)/release/jepsen test --strand $(STRAND) --dir store/smoke \
		--duration 90 --targets one,leader --min-sends 2000 --min-faults 8 \
		--cleanup-policy compact,delete

unit:
	cargo test --release --workspace

# Property-based fuzzing of the request decoder and record-batch validation
# (protocol/src/fuzz.rs) with many more cases than `make unit` runs; PROPTEST_CASES=N.
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-50000} cargo test --release -p strand-protocol --lib fuzz::

e2e: build $(VENV)/.installed
	STRAND_BIN=$(STRAND) $(VENV)/bin/pytest tests/e2e

# Strand against Apache Kafka 4.x on this machine, every workload of issue 7, short runs
# (about 10 s of load each, 200 MB read back), plus kafka-producer-perf-test as a second
# opinion: results in benches/results/latest.md with charts. BENCH_ARGS=--full for the
# long version (45 s runs, 1 GB); e.g. BENCH_ARGS="--workloads 1,3 --systems strand,kafka".
bench: build $(VENV)/.bench-installed kafka-install
	$(VENV)/bin/python benches/compare.py --strand $(STRAND) \
		--loadgen $(CARGO_TARGET_DIR)/release/loadgen --kafka-perf-test $(BENCH_ARGS)

bench-full:
	$(MAKE) bench BENCH_ARGS="--full $(BENCH_ARGS)"

# Apache Kafka's jars from Maven Central into /var/cache/strand (once; benches/kafka/).
kafka-install: setup
	benches/kafka/install.sh

$(VENV)/.bench-installed: benches/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q -r benches/requirements.txt
	touch $@

# Produce throughput against a fresh single node (acks=all, 1 KiB records, 16 partitions by
# default), with fsyncs and write amplification from its metrics; pass options with
# BENCH_ARGS, e.g. BENCH_ARGS="--partitions 4 --seconds 60".
bench-produce: build $(VENV)/.installed
	$(VENV)/bin/python benches/produce.py --strand $(STRAND) $(BENCH_ARGS)

# Disk use under retention: one node, a topic keeping a minute of data, a producer at a
# steady 4 MB/s for 30 minutes; fails unless the data directory stops growing and the log
# start keeps advancing (benches/disk_flat.py). Too slow for `make test`, whose e2e tests
# check the purging it relies on (tests/e2e/test_snapshots.py).
disk-flat: build $(VENV)/.installed
	$(VENV)/bin/python benches/disk_flat.py --strand $(STRAND) $(DISK_FLAT_ARGS)

# What deleting data costs, against Kafka: workloads 1 and 2 with a minute's retention
# (and Strand without), producer throughput to a compacted topic (10,000 keys, 1 KiB
# values) and MB/s cleaned; results in benches/results/lifecycle.md (benches/lifecycle.py,
# about 30 minutes).
bench-lifecycle: build $(VENV)/.bench-installed kafka-install
	$(VENV)/bin/python benches/lifecycle.py --strand $(STRAND) \
		--loadgen $(CARGO_TARGET_DIR)/release/loadgen $(BENCH_ARGS)

# A bystander's Metadata latency on one node while each of the untrusted-input probe's
# resource attacks runs, ten seconds each (broker/tests/bystander.rs): results in
# benches/results/bystander.json.
bench-attacks: build
	STRAND_BYSTANDER_OUT=$(CURDIR)/benches/results/bystander.json \
		cargo test --release -p strand-broker --test bystander -- --ignored --nocapture

# Moving a partition of 5 GB to a new node, all retained (replayed from the log) and with
# all but 1 GB deleted (sent as a snapshot): time and bytes (benches/move.py).
bench-move: build $(VENV)/.installed
	$(VENV)/bin/python benches/move.py --strand $(STRAND) $(BENCH_ARGS)

# The cluster figures: replicated throughput, produce stall after leader kills, idle CPU
# with 1,000 partitions (benches/cluster.py; uses ports 9092-9094, so stop `make cluster`).
bench-cluster: build $(VENV)/.installed
	$(VENV)/bin/python benches/cluster.py --strand $(STRAND) $(BENCH_ARGS)

# A Jepsen-style test: a fresh three-node cluster, each node in its own network namespace,
# the queue workload through librdkafka, kill, pause and partition faults, then the checker
# (jepsen/). Exits 0 only if the history
# is valid. Options through JEPSEN_ARGS, e.g. JEPSEN_ARGS="--duration 600 --seed 42".
jepsen: build
	$(CARGO_TARGET_DIR)/release/jepsen test --strand $(STRAND) --dir store/latest $(JEPSEN_ARGS)

# The harness must catch a broker that breaks its guarantees on purpose: builds strand with
# the unsafe-modes feature (as strand-unsafe; then the normal binary again, since both share
# one path in the target dir) and runs `jepsen selfcheck`, once per unsafe mode and once with
# none per fault mix. Exits 0 only when every unsafe mode is caught and every control run is
# valid.
STRAND_UNSAFE := $(CARGO_TARGET_DIR)/release/strand-unsafe
jepsen-selfcheck: build
	cargo build --release --workspace --bins --features strand-broker/unsafe-modes
	cp $(STRAND) $(STRAND_UNSAFE)
	cargo build --release --workspace --bins
	$(CARGO_TARGET_DIR)/release/jepsen selfcheck --strand $(STRAND_UNSAFE) $(JEPSEN_ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-data:
	rm -rf ./data

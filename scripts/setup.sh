#!/usr/bin/env bash
# Installs what building and testing Strand needs and this machine lacks. Safe to re-run:
# it only installs what is missing. Called by `make run` and `make test`.
set -euo pipefail

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
have_pkg libclang-dev || missing+=(libclang-dev)   # RocksDB's bindgen needs libclang
command -v c++ >/dev/null || missing+=(g++)         # RocksDB is C++
command -v make >/dev/null || missing+=(make)
command -v kcat >/dev/null || missing+=(kcat)       # a client the tests drive
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v java >/dev/null || missing+=(default-jdk-headless)  # the Java client tests
command -v mvn >/dev/null || missing+=(maven)                  # fetches kafka-clients and kafka-tools
command -v ip >/dev/null || missing+=(iproute2)                # jepsen: network namespaces
command -v iptables >/dev/null || missing+=(iptables)          # jepsen: partitions
command -v fusermount3 >/dev/null || missing+=(fuse3)         # jepsen: lost un-fsynced writes

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "setup: missing ${missing[*]}; install them with your package manager" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: Rust is missing; install it from https://rustup.rs and re-run" >&2
    exit 1
fi

if ! command -v go >/dev/null; then
    # The Go clients' scenarios (tests/compat/go); distributions' packages are often too old.
    echo "setup: Go is missing; install Go $(sed -n 's/^go //p' tests/compat/go/go.mod) or later from https://go.dev/dl and re-run" >&2
    exit 1
fi

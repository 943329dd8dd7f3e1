#!/usr/bin/env bash
# Runs a three-node Strand cluster on this machine, for development and tests.
#
#   deploy/local-cluster.sh start            start nodes 1..3, return once all serve
#   deploy/local-cluster.sh stop             stop all nodes (SIGTERM)
#   deploy/local-cluster.sh status           show each node's state
#   deploy/local-cluster.sh kill N           kill -9 node N
#   deploy/local-cluster.sh restart N        stop node N if it runs, then start it
#   deploy/local-cluster.sh pause N          freeze node N (SIGSTOP)
#   deploy/local-cluster.sh resume N         unfreeze node N (SIGCONT)
#
# Node N serves Kafka on 127.0.0.1:909(1+N), Raft on 127.0.0.1:1909(1+N) and metrics on
# 127.0.0.1:1009(1+N); its config, log, pid and data are in ./data/cluster/nodeN.
# STRAND_BIN names the binary (default: the release build). Extra settings for every node
# can be given as STRAND_* environment variables.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${STRAND_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/strand}"
BASE="${STRAND_CLUSTER_DIR:-$ROOT/data/cluster}"
NODES=(1 2 3)
INITIAL="1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"

dir() { echo "$BASE/node$1"; }
pid_of() { cat "$(dir "$1")/strand.pid" 2>/dev/null || true; }
running() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
state() {
    local p; p="$(pid_of "$1")"
    if ! running "$1"; then echo stopped; return; fi
    if grep -q '^State:.*T' "/proc/$p/status" 2>/dev/null; then echo paused; else echo running; fi
}

need_node() {
    case "${1:-}" in 1|2|3) ;; *) echo "usage: $0 $2 N   (N is 1, 2 or 3)" >&2; exit 2 ;; esac
}

start_node() {
    local n="$1" d; d="$(dir "$n")"
    if running "$n"; then return; fi
    if [ ! -x "$BIN" ]; then
        echo "no strand binary at $BIN: run 'make build' or set STRAND_BIN" >&2; exit 1
    fi
    mkdir -p "$d"
    cat > "$d/strand.toml" <<CONF
node-id = $n
data-dir = "$d/data"
listen = "127.0.0.1:909$((1 + n))"
raft-listen = "127.0.0.1:1909$((1 + n))"
metrics-listen = "127.0.0.1:1009$((1 + n))"
initial-cluster = "$INITIAL"
CONF
    echo "===== $(date -Is) start" >> "$d/strand.log"
    nohup "$BIN" --config "$d/strand.toml" >> "$d/strand.log" 2>&1 &
    echo $! > "$d/strand.pid"
}

serves() {
    # A node serves when it answers Metadata and lists itself as a broker.
    timeout 3 kcat -b "127.0.0.1:909$((1 + $1))" -L -m 2 2>/dev/null | grep -q "broker $1 at"
}

wait_serving() {
    local deadline=$((SECONDS + ${STRAND_START_TIMEOUT:-60}))
    for n in "$@"; do
        until serves "$n"; do
            if ! running "$n"; then
                echo "node $n exited; last log lines:" >&2; tail -20 "$(dir "$n")/strand.log" >&2; exit 1
            fi
            if [ $SECONDS -ge $deadline ]; then
                echo "node $n did not start serving in time; see $(dir "$n")/strand.log" >&2; exit 1
            fi
            sleep 0.2
        done
    done
}

stop_node() {
    local n="$1" p; p="$(pid_of "$n")"
    if ! running "$n"; then return; fi
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p"
    for _ in $(seq 1 150); do running "$n" || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}

cmd="${1:-}"
case "$cmd" in
    start)
        for n in "${NODES[@]}"; do start_node "$n"; done
        wait_serving "${NODES[@]}"
        echo "cluster serving on 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
        ;;
    stop)
        for n in "${NODES[@]}"; do stop_node "$n"; done
        ;;
    status)
        for n in "${NODES[@]}"; do
            echo "node $n: $(state "$n") (pid $(pid_of "$n"), kafka 127.0.0.1:909$((1 + n)))"
        done
        ;;
    kill)
        need_node "${2:-}" kill
        p="$(pid_of "$2")"; if running "$2"; then kill -KILL "$p"; fi
        ;;
    restart)
        need_node "${2:-}" restart
        stop_node "$2"; start_node "$2"; wait_serving "$2"
        ;;
    pause)
        need_node "${2:-}" pause
        running "$2" && kill -STOP "$(pid_of "$2")"
        ;;
    resume)
        need_node "${2:-}" resume
        running "$2" && kill -CONT "$(pid_of "$2")"
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac

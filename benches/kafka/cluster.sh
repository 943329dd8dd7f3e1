#!/usr/bin/env bash
# Starts, stops and shows an Apache Kafka cluster in KRaft mode on loopback, the reference
# for Strand's benchmarks. Every node is a combined broker+controller
# (process.roles=broker,controller) with a static controller quorum.
#
#   benches/kafka/cluster.sh start [--nodes 1|3] [--durable]   # default: 3 nodes, Kafka's lazy fsync
#   benches/kafka/cluster.sh status                             # exit status 0 iff every node runs
#   benches/kafka/cluster.sh stop                              # stops every node, removes $KAFKA_DATA
#
# Environment (all optional):
#   KAFKA_DATA                  state directory (default /tmp/strand-bench-kafka): node<N>/{server.properties,
#                               server.log,gc.log,kafka.pid,data/}, plus cluster.env and bootstrap
#   KAFKA_BASE_PORT             first broker port (default 29092); node N listens on KAFKA_BASE_PORT+N-1
#   KAFKA_CONTROLLER_BASE_PORT  first controller port (default KAFKA_BASE_PORT+100)
#   KAFKA_HEAP_OPTS             heap per node (default "-Xms1g -Xmx1g", as bin/kafka-server-start.sh)
#   KAFKA_JVM_PERFORMANCE_OPTS  GC flags (default: those of bin/kafka-run-class.sh)
#   KAFKA_OPTS                  more JVM flags for each node
#   KAFKA_SERVER_PROPS          extra server properties, whitespace-separated key=value, appended to
#                               every node's server.properties (later keys win in Java properties)
#   KAFKA_START_TIMEOUT         seconds to wait for a usable cluster (default 120)
#   KAFKA_STOP_TIMEOUT          seconds between SIGTERM and SIGKILL (default 30)
#   KAFKA_KEEP_DATA=1           stop leaves $KAFKA_DATA (logs, data) in place
#   KAFKA_HOME, KAFKA_VERSION   where install.sh put the jars (see common.sh)
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_DATA=$(realpath -m "${KAFKA_DATA:-/tmp/strand-bench-kafka}")
KAFKA_BASE_PORT=${KAFKA_BASE_PORT:-29092}
KAFKA_CONTROLLER_BASE_PORT=${KAFKA_CONTROLLER_BASE_PORT:-$((KAFKA_BASE_PORT + 100))}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xms1g -Xmx1g"}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
MARKER=.strand-bench-kafka

usage() {
    cat >&2 <<'USAGE'
usage: cluster.sh start [--nodes 1|3] [--durable]
       cluster.sh stop
       cluster.sh status
USAGE
    exit 2
}

broker_port() { echo $((KAFKA_BASE_PORT + $1 - 1)); }
controller_port() { echo $((KAFKA_CONTROLLER_BASE_PORT + $1 - 1)); }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid recorded for node $1, if that process is still a Kafka broker started from this
# data directory (a recycled pid is not ours).
node_pid() {
    local pidfile=$KAFKA_DATA/node$1/kafka.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "kafka.Kafka $KAFKA_DATA/node$1/server.properties" || return 1
    echo "$pid"
}

# The node numbers that have a directory in $KAFKA_DATA.
known_nodes() {
    local dir
    for dir in "$KAFKA_DATA"/node*; do
        [[ -d $dir ]] && echo "${dir##*/node}"
    done
    return 0
}

# A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding (the format
# of `kafka-storage random-uuid`). Like Kafka's Uuid.randomUuid, it never starts with '-',
# which the format command's argument parser would take for an option.
new_cluster_id() {
    local id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    echo "$id"
}

write_server_properties() {
    local n=$1 nodes=$2 durable=$3 voters=$4 file=$KAFKA_DATA/node$1/server.properties
    local rf=1 min_isr=1
    if ((nodes >= 3)); then
        rf=3
        min_isr=2
    fi
    {
        echo "# Written by benches/kafka/cluster.sh for node $n of $nodes."
        echo "process.roles=broker,controller"
        echo "node.id=$n"
        echo "controller.quorum.voters=$voters"
        echo "listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n")"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "controller.listener.names=CONTROLLER"
        echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        echo "log.dirs=$KAFKA_DATA/node$n/data"
        echo
        echo "# Kafka's example config/server.properties (all equal to the documented defaults"
        echo "# except group.initial.rebalance.delay.ms, 3000 by default)."
        echo "num.network.threads=3"
        echo "num.io.threads=8"
        echo "socket.send.buffer.bytes=102400"
        echo "socket.receive.buffer.bytes=102400"
        echo "socket.request.max.bytes=104857600"
        echo "num.partitions=1"
        echo "num.recovery.threads.per.data.dir=1"
        echo "log.retention.hours=168"
        echo "log.segment.bytes=1073741824"
        echo "log.retention.check.interval.ms=300000"
        echo "group.initial.rebalance.delay.ms=0"
        echo
        echo "# Replication: RF = nodes (1 or 3); with 3 nodes acks=all needs two replicas in sync."
        echo "default.replication.factor=$rf"
        echo "min.insync.replicas=$min_isr"
        echo "offsets.topic.replication.factor=$rf"
        echo "transaction.state.log.replication.factor=$rf"
        echo "transaction.state.log.min.isr=$min_isr"
        echo "share.coordinator.state.topic.replication.factor=$rf"
        echo "share.coordinator.state.topic.min.isr=$min_isr"
        if ((durable)); then
            echo
            echo "# --durable: fsync every partition after every append (topic config flush.messages=1)."
            echo "log.flush.interval.messages=1"
        fi
        if [[ -n ${KAFKA_SERVER_PROPS:-} ]]; then
            echo
            echo "# KAFKA_SERVER_PROPS"
            local prop props
            read -r -a props <<<"$KAFKA_SERVER_PROPS"
            for prop in "${props[@]}"; do
                [[ $prop == *=* ]] || die "KAFKA_SERVER_PROPS entry '$prop' is not key=value"
                echo "$prop"
            done
        fi
    } >"$file"
}

# Dies, with the end of its log, when node $1 (started by this call) has exited.
check_alive() {
    local pid
    pid=$(<"$KAFKA_DATA/node$1/kafka.pid")
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$KAFKA_DATA/node$1/server.log" >&2 || true
        die "node $1 (pid $pid) exited during start-up: last lines of $KAFKA_DATA/node$1/server.log above"
    fi
}

# EXIT trap of a failed start: stops the nodes it had started (their logs stay in $KAFKA_DATA).
abort_start() {
    local pid
    ((${#STARTED_PIDS[@]})) || return 0
    echo "start failed: stopping the node(s) it started (${STARTED_PIDS[*]})" >&2
    for pid in "${STARTED_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Waits until `BrokerApiVersionsCommand` sees $1 brokers through $2, i.e. every broker has
# registered with the controller quorum and is unfenced, so topics with RF=nodes can be made.
wait_usable() {
    local nodes=$1 bootstrap=$2 deadline=$3 out seen n
    while :; do
        out=$(KAFKA_TOOL_HEAP_OPTS=-Xmx256m call_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "$bootstrap" 2>/dev/null || true)
        seen=$(grep -cE '^127\.0\.0\.1:[0-9]+ \(id: [0-9]+' <<<"$out" || true)
        ((seen == nodes)) && return 0
        for ((n = 1; n <= nodes; n++)); do check_alive "$n"; done
        ((SECONDS < deadline)) || die "the cluster did not become usable in ${KAFKA_START_TIMEOUT}s ($seen of $nodes brokers visible): see $KAFKA_DATA/node*/server.log"
        sleep 1
    done
}

cmd_start() {
    local nodes=3 durable=0
    while (($#)); do
        case $1 in
            --nodes)
                [[ ${2:-} =~ ^(1|3)$ ]] || die "--nodes takes 1 or 3"
                nodes=$2
                shift 2
                ;;
            --nodes=*)
                nodes=${1#--nodes=}
                [[ $nodes =~ ^(1|3)$ ]] || die "--nodes takes 1 or 3"
                shift
                ;;
            --durable)
                durable=1
                shift
                ;;
            *) usage ;;
        esac
    done
    require_kafka

    local n pid
    for n in $(known_nodes); do
        if pid=$(node_pid "$n"); then
            die "node $n is already running (pid $pid) from $KAFKA_DATA: run 'benches/kafka/cluster.sh stop' first"
        fi
    done
    for ((n = 1; n <= nodes; n++)); do
        local p
        for p in "$(broker_port "$n")" "$(controller_port "$n")"; do
            if port_open "$p"; then
                die "127.0.0.1:$p is already in use: stop whatever listens there, or choose other ports with KAFKA_BASE_PORT / KAFKA_CONTROLLER_BASE_PORT"
            fi
        done
    done
    if [[ -e $KAFKA_DATA ]]; then
        if [[ -f $KAFKA_DATA/$MARKER ]]; then
            rm -rf "$KAFKA_DATA"
        elif [[ -n $(ls -A "$KAFKA_DATA") ]]; then
            die "$KAFKA_DATA exists and was not made by cluster.sh: remove it or set KAFKA_DATA to another directory"
        fi
    fi
    mkdir -p "$KAFKA_DATA" || die "cannot create $KAFKA_DATA: set KAFKA_DATA to a writable directory"
    touch "$KAFKA_DATA/$MARKER"

    local cluster_id voters="" bootstrap=""
    cluster_id=$(new_cluster_id)
    for ((n = 1; n <= nodes; n++)); do
        voters+="${voters:+,}$n@127.0.0.1:$(controller_port "$n")"
        bootstrap+="${bootstrap:+,}127.0.0.1:$(broker_port "$n")"
    done
    {
        echo "NODES=$nodes"
        echo "DURABLE=$durable"
        echo "BOOTSTRAP=$bootstrap"
        echo "CLUSTER_ID=$cluster_id"
        echo "KAFKA_VERSION=$KAFKA_VERSION"
        echo "KAFKA_BASE_PORT=$KAFKA_BASE_PORT"
        echo "KAFKA_CONTROLLER_BASE_PORT=$KAFKA_CONTROLLER_BASE_PORT"
    } >"$KAFKA_DATA/cluster.env"
    echo "$bootstrap" >"$KAFKA_DATA/bootstrap"

    # Format every node's log directory with the same cluster id. With a static quorum
    # (controller.quorum.voters) format takes no --standalone/--initial-controllers flag.
    for ((n = 1; n <= nodes; n++)); do
        mkdir -p "$KAFKA_DATA/node$n"
        write_server_properties "$n" "$nodes" "$durable" "$voters"
        if ! KAFKA_TOOL_HEAP_OPTS=-Xmx256m call_tool kafka.tools.StorageTool format \
                --config "$KAFKA_DATA/node$n/server.properties" --cluster-id "$cluster_id" \
                >"$KAFKA_DATA/node$n/format.log" 2>&1; then
            cat "$KAFKA_DATA/node$n/format.log" >&2
            die "formatting node $n's storage failed (output above)"
        fi
    done

    # If anything below fails, stop the nodes this call started.
    STARTED_PIDS=()
    trap abort_start EXIT
    for ((n = 1; n <= nodes; n++)); do
        local dir=$KAFKA_DATA/node$n
        # setsid: the nodes outlive this script and a Ctrl-C in the benchmark's terminal.
        # shellcheck disable=SC2086 # the *_OPTS variables are word lists by design
        setsid "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_OPTS:-} \
            "-Xlog:gc*:file=$dir/gc.log:time,tags:filecount=10,filesize=100M" \
            "-Dlog4j2.configurationFile=$KAFKA_BENCH_DIR/log4j2-broker.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
            >"$dir/server.log" 2>&1 </dev/null &
        echo $! >"$dir/kafka.pid"
        STARTED_PIDS+=("$!")
    done

    # Each node logs "Kafka Server started" once its broker and controller listeners are up.
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    for ((n = 1; n <= nodes; n++)); do
        local log=$KAFKA_DATA/node$n/server.log
        until grep -q 'Kafka Server started' "$log"; do
            check_alive "$n"
            ((SECONDS < deadline)) || die "node $n did not start in ${KAFKA_START_TIMEOUT}s: see $log"
            sleep 0.5
        done
    done
    wait_usable "$nodes" "$bootstrap" "$deadline"
    for ((n = 1; n <= nodes; n++)); do
        check_alive "$n"
        port_open "$(broker_port "$n")" || die "node $n is running but 127.0.0.1:$(broker_port "$n") is closed: see $KAFKA_DATA/node$n/server.log"
    done
    trap - EXIT

    local flush="Kafka's default lazy fsync"
    ((durable)) && flush="fsync after every append (log.flush.interval.messages=1)"
    echo "Kafka $KAFKA_VERSION: $nodes node(s) up in ${SECONDS}s, $flush"
    echo "bootstrap: $bootstrap"
    for ((n = 1; n <= nodes; n++)); do
        echo "node $n: pid $(<"$KAFKA_DATA/node$n/kafka.pid"), broker 127.0.0.1:$(broker_port "$n"), controller 127.0.0.1:$(controller_port "$n"), log $KAFKA_DATA/node$n/server.log"
    done
}

cmd_stop() {
    (($# == 0)) || usage
    local n pid pids=()
    for n in $(known_nodes); do
        if pid=$(node_pid "$n"); then
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((${#pids[@]})); then
        echo "stopping ${#pids[@]} node(s): ${pids[*]}"
        local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT)) alive
        while :; do
            alive=()
            for pid in "${pids[@]}"; do
                [[ -e /proc/$pid ]] && alive+=("$pid")
            done
            ((${#alive[@]})) || break
            if ((SECONDS >= deadline)); then
                echo "still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL: ${alive[*]}"
                kill -KILL "${alive[@]}" 2>/dev/null || true
                sleep 1
                break
            fi
            sleep 0.5
        done
    else
        echo "no node is running from $KAFKA_DATA"
    fi
    if [[ ${KAFKA_KEEP_DATA:-0} == 1 ]]; then
        echo "kept $KAFKA_DATA (KAFKA_KEEP_DATA=1)"
    elif [[ -f $KAFKA_DATA/$MARKER ]]; then
        rm -rf "$KAFKA_DATA"
        echo "removed $KAFKA_DATA"
    elif [[ -e $KAFKA_DATA ]]; then
        echo "left $KAFKA_DATA alone: cluster.sh did not make it" >&2
    fi
}

cmd_status() {
    (($# == 0)) || usage
    if [[ ! -f $KAFKA_DATA/cluster.env ]]; then
        echo "no cluster in $KAFKA_DATA"
        return 1
    fi
    local NODES DURABLE BOOTSTRAP CLUSTER_ID
    NODES=$(sed -n 's/^NODES=//p' "$KAFKA_DATA/cluster.env")
    DURABLE=$(sed -n 's/^DURABLE=//p' "$KAFKA_DATA/cluster.env")
    BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$KAFKA_DATA/cluster.env")
    CLUSTER_ID=$(sed -n 's/^CLUSTER_ID=//p' "$KAFKA_DATA/cluster.env")
    KAFKA_BASE_PORT=$(sed -n 's/^KAFKA_BASE_PORT=//p' "$KAFKA_DATA/cluster.env")
    echo "cluster $CLUSTER_ID in $KAFKA_DATA: $NODES node(s), durable=$DURABLE, bootstrap $BOOTSTRAP"
    local n pid running=0
    for n in $(known_nodes); do
        local port
        port=$(broker_port "$n")
        if pid=$(node_pid "$n"); then
            running=$((running + 1))
            local rss
            rss=$(awk '/^VmRSS:/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")
            echo "node $n: running, pid $pid, RSS $rss, 127.0.0.1:$port $(port_open "$port" && echo open || echo closed)"
        else
            echo "node $n: not running"
        fi
    done
    ((running == NODES))
}

(($#)) || usage
command=$1
shift
case $command in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac

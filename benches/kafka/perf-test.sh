#!/usr/bin/env bash
# Kafka's own producer benchmark (org.apache.kafka.tools.ProducerPerformance, what
# bin/kafka-producer-perf-test.sh runs); every argument is passed through.
#
#   benches/kafka/perf-test.sh --topic bench --num-records 200000 --record-size 1024 \
#       --throughput -1 --producer-props acks=all bootstrap.servers=127.0.0.1:29092
#
# Prints "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
# p50 ms 50th, p95 ms 95th, p99 ms 99th, p999 ms 99.9th." last; the latency is from send()
# to the acknowledgement callback. Heap: KAFKA_TOOL_HEAP_OPTS (default -Xmx512M, as Kafka's
# wrapper script).
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_kafka
run_tool org.apache.kafka.tools.ProducerPerformance "$@"

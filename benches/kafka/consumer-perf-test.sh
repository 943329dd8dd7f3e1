#!/usr/bin/env bash
# Kafka's own consumer benchmark (org.apache.kafka.tools.ConsumerPerformance, what
# bin/kafka-consumer-perf-test.sh runs); every argument is passed through.
#
#   benches/kafka/consumer-perf-test.sh --bootstrap-server 127.0.0.1:29092 --topic bench \
#       --num-records 200000 --timeout 60000
#
# Prints one CSV line: start.time, end.time, data.consumed.in.MB, MB.sec,
# data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
# fetch.nMsg.sec. Heap: KAFKA_TOOL_HEAP_OPTS (default -Xmx512M, as Kafka's wrapper script).
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_kafka
run_tool org.apache.kafka.tools.ConsumerPerformance "$@"

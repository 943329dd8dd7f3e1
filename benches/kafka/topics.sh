#!/usr/bin/env bash
# Kafka's topic tool (org.apache.kafka.tools.TopicCommand, what bin/kafka-topics.sh runs);
# every argument is passed through.
#
#   benches/kafka/topics.sh --bootstrap-server 127.0.0.1:29092 --create --topic bench \
#       --partitions 16 --replication-factor 3
#   benches/kafka/topics.sh --bootstrap-server 127.0.0.1:29092 --describe --topic bench
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_kafka
KAFKA_TOOL_HEAP_OPTS=${KAFKA_TOOL_HEAP_OPTS:--Xmx256M} run_tool org.apache.kafka.tools.TopicCommand "$@"

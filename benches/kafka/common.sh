# shellcheck shell=bash
# Shared settings for the Apache Kafka reference scripts (sourced, not run).
#
# Environment (all optional):
#   KAFKA_VERSION   Kafka release to use (default 4.3.1; it must match pom.xml's default
#                   or be passed to install.sh, which hands it to Maven)
#   KAFKA_HOME      where the jars live: $KAFKA_HOME/libs (default /var/cache/strand/kafka-$KAFKA_VERSION)
#   JAVA            the java binary (default: java on PATH)

KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
KAFKA_HOME=${KAFKA_HOME:-/var/cache/strand/kafka-$KAFKA_VERSION}
KAFKA_LIBS=$KAFKA_HOME/libs
JAVA=${JAVA:-java}
KAFKA_BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The JVM flags Kafka's bin/kafka-run-class.sh uses when KAFKA_JVM_PERFORMANCE_OPTS is unset.
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:-"-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"}

die() {
    echo "error: $*" >&2
    exit 1
}

# Fails with the fix when java or the jars are missing.
require_kafka() {
    command -v "$JAVA" >/dev/null 2>&1 \
        || die "'$JAVA' not found: install a JDK 17 or newer (apt-get install openjdk-17-jre-headless) or set JAVA=/path/to/java"
    [[ -f $KAFKA_LIBS/.complete ]] \
        || die "Kafka $KAFKA_VERSION is not installed in $KAFKA_LIBS: run benches/kafka/install.sh (with the same KAFKA_HOME/KAFKA_VERSION)"
}

# run_tool MAIN_CLASS ARGS...: runs one of Kafka's command-line tools in the foreground,
# with the heap its bin/ wrappers give tools (KAFKA_TOOL_HEAP_OPTS, default -Xmx512M as in
# kafka-producer-perf-test.sh) and warnings only on stderr.
run_tool() {
    local main=$1
    shift
    local heap=${KAFKA_TOOL_HEAP_OPTS:--Xmx512M}
    # shellcheck disable=SC2086 # the *_OPTS variables are word lists by design
    exec "$JAVA" $heap $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_TOOL_OPTS:-} \
        "-Dlog4j2.configurationFile=$KAFKA_BENCH_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIBS/*" "$main" "$@"
}

# Like run_tool, but returns instead of replacing the shell.
call_tool() {
    (run_tool "$@")
}

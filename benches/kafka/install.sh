#!/usr/bin/env bash
# Installs Apache Kafka (the broker, kafka_2.13, and its command-line tools, kafka-tools)
# from Maven Central into $KAFKA_HOME/libs, outside the repository. Idempotent: does
# nothing when that version is already there.
#
#   benches/kafka/install.sh                       # Kafka 4.3.1 into /var/cache/strand/kafka-4.3.1/libs
#   KAFKA_HOME=/tmp/kafka benches/kafka/install.sh
#   KAFKA_VERSION=4.2.1 benches/kafka/install.sh   # another release (kafka_2.13 and kafka-tools must both exist)
set -euo pipefail

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -f $KAFKA_LIBS/.complete ]] && grep -qx "version=$KAFKA_VERSION" "$KAFKA_LIBS/.complete"; then
    echo "Kafka $KAFKA_VERSION is already installed in $KAFKA_LIBS"
    exit 0
fi
[[ ! -e $KAFKA_LIBS ]] || [[ -f $KAFKA_LIBS/.complete ]] \
    || die "$KAFKA_LIBS exists but holds no finished install: remove it (rm -r '$KAFKA_LIBS') and run install.sh again"
[[ ! -f $KAFKA_LIBS/.complete ]] \
    || die "$KAFKA_LIBS holds another Kafka version ($(grep '^version=' "$KAFKA_LIBS/.complete")): set KAFKA_HOME to another directory, or remove it"

command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
command -v "$JAVA" >/dev/null 2>&1 || die "'$JAVA' not found: install a JDK 17 or newer (apt-get install openjdk-17-jdk-headless)"

mkdir -p "$KAFKA_HOME" 2>/dev/null \
    || die "cannot create $KAFKA_HOME: run as a user who can, or set KAFKA_HOME to a writable directory"
[[ -w $KAFKA_HOME ]] || die "$KAFKA_HOME is not writable: set KAFKA_HOME to a writable directory"

staging=$(mktemp -d "$KAFKA_HOME/libs.partial.XXXXXX")
trap 'rm -rf "$staging"' EXIT

echo "Resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and kafka-tools:$KAFKA_VERSION with Maven..."
# Maven's output goes to a file (Debian's mvn writes colour codes even in batch mode) and
# is shown only when it fails.
mvn_log=$staging/.mvn.log
if ! mvn -B -q -f "$KAFKA_BENCH_DIR/pom.xml" "-Dkafka.version=$KAFKA_VERSION" \
        dependency:copy-dependencies "-DoutputDirectory=$staging" -DincludeScope=runtime \
        >"$mvn_log" 2>&1 </dev/null; then
    sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" >&2
    die "mvn could not resolve Kafka $KAFKA_VERSION: check that Maven Central is reachable (mvn's settings/proxy) and that both kafka_2.13 and kafka-tools exist in that version"
fi

for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
    [[ -f $staging/$jar ]] || die "Maven finished but $jar is missing from the download"
done

jars=$(find "$staging" -maxdepth 1 -name '*.jar' | wc -l)
rm -f "$mvn_log"
printf 'version=%s\njars=%s\n' "$KAFKA_VERSION" "$jars" >"$staging/.complete"
chmod 755 "$staging"
mv "$staging" "$KAFKA_LIBS"
trap - EXIT
echo "Installed Kafka $KAFKA_VERSION ($jars jars) in $KAFKA_LIBS"

#!/usr/bin/env bash
# MirrorMaker 2 side by side: one topic copied from a source Apache Kafka cluster to a sink
# cluster by Apache Kafka's MirrorMaker 2 (dedicated mode), by kafka-transit's passthrough
# policy and by kafka-transit's envelope-seal policy (OpenBao holding the transit key); the
# steady-state rate and the copier's CPU of each. See bench/README.md, "MirrorMaker 2 side
# by side".
#
#   bash bench/mirror.sh [--records N] [--value-bytes B] [--partitions P] [--runs R] [--smoke] [--out DIR]
#                        [--pipeline 'TOML']
#
# --pipeline adds settings to kafka-transit's [pipeline] table, e.g.
# --pipeline 'batch_size = 2000' (see docs/configuration.md), to try a tuning side by side.
#
# Starts two Kafka clusters and OpenBao here and stops everything on exit; the results
# (mirror.md, mirror.json), configurations and copier logs stay in --out (default: a new
# directory under $TMPDIR). The brokers and MirrorMaker are one Kafka version
# (.ci/kafka/mirrormaker.sh). kafka-transit is KAFKA_TRANSIT_BIN, else the workspace's
# target/release/kafka-transit (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=500000 VALUE_BYTES=1024 PARTITIONS=6 RUNS=1 SMOKE=false OUT=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --records) RECORDS=${2:?--records needs a value}; shift ;;
    --value-bytes) VALUE_BYTES=${2:?--value-bytes needs a value}; shift ;;
    --partitions) PARTITIONS=${2:?--partitions needs a value}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --pipeline) export PIPELINE_SETTINGS=${2:?--pipeline needs TOML, e.g. 'batch_size = 2000'}; shift ;;
    --smoke) SMOKE=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
if $SMOKE; then RECORDS=20000 RUNS=1; fi
for number in "$RECORDS" "$VALUE_BYTES" "$PARTITIONS" "$RUNS"; do
  [[ $number =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $number" >&2; exit 2; }
done

source demos/lib/stack.sh
require_tools --servers

say "Apache Kafka and MirrorMaker 2 jars, OpenBao (cached by version under $KT_CACHE)"
MM2_LIBS=$(bash .ci/kafka/mirrormaker.sh install) || fail "MirrorMaker 2 could not be installed"
KAFKA_VERSION=$(bash .ci/kafka/mirrormaker.sh version)
# The clusters run the same Kafka version as MirrorMaker.
export KAFKA_TRANSIT_KAFKA_LIBS=$MM2_LIBS
bash "$OPENBAO_SH" install >/dev/null || fail "OpenBao could not be installed"

KAFKA_TRANSIT=${KAFKA_TRANSIT_BIN:-}
if [ -z "$KAFKA_TRANSIT" ]; then
  KAFKA_TRANSIT="$(target_dir)/release/kafka-transit"
  if [ ! -x "$KAFKA_TRANSIT" ]; then
    say "building kafka-transit (release): $KAFKA_TRANSIT is missing"
    cargo build --release -p kafka-transit --bin kafka-transit
  fi
fi
[ -x "$KAFKA_TRANSIT" ] || fail "no kafka-transit binary at $KAFKA_TRANSIT"
say "kafka-transit: $KAFKA_TRANSIT ($("$KAFKA_TRANSIT" --version))"

OUT=${OUT:-$(mktemp -d -t kafka-transit-mirror.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

start_kafka                  # the source cluster: KAFKA_BOOTSTRAP
start_kafka SINK_BOOTSTRAP   # the sink cluster
# shellcheck disable=SC2119 # start_openbao takes no option here: plain http
start_openbao
vault_write transit/keys/bench-mirror '{}' || fail "could not create the transit key bench-mirror"

TOPIC=mirror-bench
say "preloading $TOPIC: $RECORDS records of $VALUE_BYTES B, $PARTITIONS partitions"
python3 bench/mirror_measure.py produce "$KAFKA_BOOTSTRAP" "$TOPIC" --records "$RECORDS" \
  --value-bytes "$VALUE_BYTES" --partitions "$PARTITIONS" --warm "$SINK_BOOTSTRAP"

# Generous: a loaded two-core machine copies 500,000 records in well under a minute.
TIMEOUT=$((120 + RECORDS / 2000))

# watch_copier LABEL RUN PID SINK_TOPIC LAUNCHED: measures the copier PID (started at the
# Unix time LAUNCHED) until the sink topic holds every record (bench/mirror_measure.py),
# its result in $OUT/LABEL-rRUN.json.
watch_copier() {
  python3 bench/mirror_measure.py watch "$SINK_BOOTSTRAP" "$4" --records "$RECORDS" \
    --value-bytes "$VALUE_BYTES" --pid "$3" --label "$1" --run "$2" --timeout "$TIMEOUT" \
    --launched "$5" --json "$OUT/$1-r$2.json"
}

# stop_copier PID SECONDS SINK_TOPIC: SIGTERM, SIGKILL after SECONDS (then forgotten by
# the EXIT trap), and the copy deleted from the sink cluster (it was counted).
stop_copier() {
  local pid=$1 i kept=() other
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for other in "${STACK_PIDS[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
  STACK_PIDS=("${kept[@]}")
  python3 bench/mirror_measure.py delete "$SINK_BOOTSTRAP" "$3" || say "could not delete $3 (sink)"
}

# run_mirrormaker RUN: MirrorMaker 2 in dedicated mode. Each run names the source cluster
# source<RUN>, so it starts with its own internal topics (no offsets from an earlier run)
# and writes to the sink topic source<RUN>.mirror-bench (DefaultReplicationPolicy).
run_mirrormaker() {
  local run=$1 alias="source$1" dir="$OUT/mirrormaker2-r$1"
  mkdir -p "$dir"
  cat >"$dir/mm2.properties" <<EOF
clusters = $alias, sink
$alias.bootstrap.servers = $KAFKA_BOOTSTRAP
sink.bootstrap.servers = $SINK_BOOTSTRAP
$alias->sink.enabled = true
$alias->sink.topics = $TOPIC
sink->$alias.enabled = false
# One task per partition.
tasks.max = $PARTITIONS
# Single-node clusters: every topic MirrorMaker creates has one replica. (No
# offset-syncs.* or checkpoints.* settings: with those features off, MirrorMaker refuses them.)
replication.factor = 1
heartbeats.topic.replication.factor = 1
config.storage.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
# Only the records: no topic configs, ACLs, heartbeats, checkpoints or consumer offsets
# (MirrorMaker then logs that it cannot configure MirrorCheckpointConnector: expected).
sync.topic.configs.enabled = false
sync.topic.acls.enabled = false
emit.heartbeats.enabled = false
emit.checkpoints.enabled = false
sync.group.offsets.enabled = false
emit.offset-syncs.enabled = false
# The sink producer batches as much as kafka-transit's may (librdkafka's batch.size is 1,000,000).
sink.producer.batch.size = 1048576
sink.producer.linger.ms = 20
# The source consumer: Kafka's defaults (MirrorMaker itself sets auto.offset.reset = earliest).
EOF
  cat >"$dir/log4j2.properties" <<EOF
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/mirrormaker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
logger.mirror.name=org.apache.kafka.connect.mirror
logger.mirror.level=INFO
EOF
  local launched
  launched=$(date +%s.%N)
  # The JVM options of Kafka's own connect-mirror-maker.sh (kafka-run-class.sh).
  java -Xms256m -Xmx2g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$MM2_LIBS/*" \
    org.apache.kafka.connect.mirror.MirrorMaker "$dir/mm2.properties" >"$dir/console.log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid")
  watch_copier mirrormaker2 "$run" "$pid" "$alias.$TOPIC" "$launched" \
    || fail "MirrorMaker 2 did not copy every record (log: $dir/mirrormaker.log, $dir/console.log)"
  stop_copier "$pid" 30 "$alias.$TOPIC"
}

# run_kafka_transit POLICY RUN 'POLICY CONFIG': a runner of POLICY with a fresh consumer
# group, writing to mirror-bench.POLICY.r<RUN> on the sink cluster.
run_kafka_transit() {
  local policy=$1 run=$2 file="$OUT/$1-r$2.toml" sink_topic="$TOPIC.$1.r$2"
  pipeline_file "$file" "$policy" "$sink_topic" "$TOPIC.dlq" "$3" "$TOPIC"
  "$KAFKA_TRANSIT" validate --config "$file" >"$OUT/$policy-r$run.validate.log" 2>&1 \
    || fail "kafka-transit validate refused $file (log: $OUT/$policy-r$run.validate.log)"
  local launched
  launched=$(date +%s.%N)
  "$KAFKA_TRANSIT" --log-format json run --config "$file" >"$OUT/$policy-r$run.log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid")
  watch_copier "$policy" "$run" "$pid" "$sink_topic" "$launched" \
    || fail "kafka-transit $policy did not copy every record (log: $OUT/$policy-r$run.log)"
  stop_copier "$pid" 30 "$sink_topic"
}

copiers=(mirrormaker2 passthrough envelope-seal)
for ((run = 1; run <= RUNS; run++)); do
  # Interleaved, each run starting with the next copier, so none always goes first.
  for ((i = 0; i < ${#copiers[@]}; i++)); do
    copier=${copiers[$(((run - 1 + i) % ${#copiers[@]}))]}
    say "run $run/$RUNS: $copier"
    case $copier in
      mirrormaker2) run_mirrormaker "$run" ;;
      passthrough) run_kafka_transit passthrough "$run" "" ;;
      envelope-seal) run_kafka_transit envelope-seal "$run" 'key = "bench-mirror"' ;;
    esac
  done
done

say "results (Kafka and MirrorMaker $KAFKA_VERSION; JSON: $OUT/mirror.json)"
python3 bench/mirror_measure.py report \
  --note "Kafka and MirrorMaker $KAFKA_VERSION.${PIPELINE_SETTINGS:+ kafka-transit [pipeline]: ${PIPELINE_SETTINGS//$'\n'/, }.}" \
  "$OUT/mirror.json" "$OUT"/*-r[0-9]*.json | tee "$OUT/mirror.md"

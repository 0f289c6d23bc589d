#!/usr/bin/env bash
# The benchmark against Apache Kafka and OpenBao: the Rust harness (benches/pipeline.rs),
# then the seed's approach (bench/seed_baseline.py), then encrypt-value against it.
#
#   bash bench/run.sh [harness options...]     # e.g. --rounds 5 --min-seconds 2
#
# Uses KAFKA_BOOTSTRAP, VAULT_ADDR and VAULT_TOKEN when all are set (plain http Vault
# with transit at transit/), and SINK_BOOTSTRAP, when set, as the second cluster of the
# pipeline-eos-2c rows (unset: the harness skips them); otherwise starts Apache Kafka, a
# second Apache Kafka (the sink of the pipeline-eos-2c rows) and OpenBao here and stops
# them on exit. SEED_RECORDS (default 3000) sizes the seed run. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source demos/lib/stack.sh
if [ -z "${KAFKA_BOOTSTRAP:-}" ] || [ -z "${VAULT_ADDR:-}" ] || [ -z "${VAULT_TOKEN:-}" ]; then
  stack_unless_given
  start_kafka SINK_BOOTSTRAP
fi
SINK_ARGS=()
if [ -n "${SINK_BOOTSTRAP:-}" ]; then SINK_ARGS=(--sink-kafka "$SINK_BOOTSTRAP"); fi
OUT=$(mktemp -d -t kafka-transit-bench.XXXXXX)
say "harness against Apache Kafka $KAFKA_BOOTSTRAP${SINK_BOOTSTRAP:+ (second cluster $SINK_BOOTSTRAP)} and Vault $VAULT_ADDR (summary: $OUT/pipeline.json)"
cargo bench -p kafka-transit --bench pipeline -- \
  --kafka "$KAFKA_BOOTSTRAP" ${SINK_ARGS[@]+"${SINK_ARGS[@]}"} --vault "$VAULT_ADDR" \
  --json "$OUT/pipeline.json" "$@"

say "the seed's approach: one Vault call per record, then produce"
vault_write transit/keys/bench '{}'
create_topics "bench-seed-$$"
python3 bench/seed_baseline.py --bootstrap "$KAFKA_BOOTSTRAP" --topic "bench-seed-$$" \
  --records "${SEED_RECORDS:-3000}" --value-bytes 1024 | tee "$OUT/seed.json"

python3 - "$OUT/pipeline.json" "$OUT/seed.json" <<'PY'
import json, sys
rows, seed = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for row in rows:
    if row["policy"] == "encrypt-value" and row["value_bytes"] == 1024 and row["measure"] in ("pipeline", "pipeline-eos", "pipeline-eos-2c"):
        ratio = row["records_per_second"] / seed["records_per_second"]
        print(f"encrypt-value {row['measure']} 1KiB: {row['records_per_second']:.0f} records/s, "
              f"{ratio:.1f}x the seed's {seed['records_per_second']:.0f} records/s")
PY

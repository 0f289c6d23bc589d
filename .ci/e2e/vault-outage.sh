#!/usr/bin/env bash
# A long Vault outage on Apache Kafka and OpenBao: OpenBao is sealed for more than twice
# the runner's max.poll.interval.ms while records keep arriving. The runner must pause
# (nothing reaches the sink, nothing is dead-lettered), stay in its consumer group (no
# rebalance, which would repeat records), and deliver everything exactly once after the
# unseal.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=3000
POLL_INTERVAL_MS=10000
WORK=$(mktemp -d -t kafka-transit-outage.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics payments.raw:3 payments.protected:3 payments.raw.dlq
vault_write transit/keys/payments '{}'

write_pipeline "$WORK/encrypt.toml" payments.raw payments.protected encrypt-value payments 'batch_size = 100'
source_properties "$WORK/encrypt.toml" '"session.timeout.ms" = "6000"' \
  "\"max.poll.interval.ms\" = \"$POLL_INTERVAL_MS\""
"$KAFKA_TRANSIT" --log-format json run --config "$WORK/encrypt.toml" >"$WORK/runner.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
wait_for 60 "the runner's partitions" grep -q '"source partitions assigned"' "$WORK/runner.log"

produce() { # FROM COUNT
  python3 - "$KAFKA_BOOTSTRAP" "$1" "$2" <<'PY'
import sys
from confluent_kafka import Producer
bootstrap, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
for i in range(start, start + count):
    producer.produce("payments.raw", key=f"payment-{i:05d}", value=f"PLAINTEXT-PAYMENT-{i:05d}")
assert producer.flush(60) == 0
PY
}
produce 0 1000
wait_for_keys payments.protected 1000 60

openbao_seal
sealed_at=$SECONDS
say "OpenBao sealed; $((N - 1000)) more records arrive during the outage"
produce 1000 $((N - 1000))
outage=$((POLL_INTERVAL_MS * 25 / 10000))
sleep "$outage"
during=$(count_distinct_keys payments.protected)
[ "$during" -eq 1000 ] || fail "$during records reached the sink while Vault was sealed (expected 1000)"
openbao_unseal
say "OpenBao unsealed after $((SECONDS - sealed_at))s (max.poll.interval.ms = $POLL_INTERVAL_MS)"

wait_for_keys payments.protected "$N" 120
kill -TERM "$runner"
wait "$runner" || fail "the runner did not exit 0 on SIGTERM (log: $WORK/runner.log)"
python3 - "$WORK/runner.log" <<'PY' || fail "see above (log: $WORK/runner.log)"
import json, sys
messages = [json.loads(line)["fields"].get("message", "") for line in open(sys.argv[1], encoding="utf-8")]
stop = next(i for i, m in enumerate(messages) if m.startswith("stop requested"))
retries = sum(1 for m in messages if m.startswith("batch not transformed"))
assert retries > 0, "the runner never waited for Vault: the outage was not tested"
assert "source partitions revoked" not in messages[:stop], "the runner lost its partitions during the outage"
print(f"   the batch waited through {retries} retries; no partition was revoked before the stop")
PY
admin_kcat -C -t payments.protected -o beginning -e -q -f '%k\t%s\n' 2>/dev/null >"$WORK/protected.tsv"
deliveries=$(wc -l <"$WORK/protected.tsv")
[ "$deliveries" -eq "$N" ] || fail "$deliveries deliveries for $N records: a rebalance repeated records"
if grep -q 'PLAINTEXT-PAYMENT' "$WORK/protected.tsv"; then fail "plaintext reached the sink"; fi
[ "$(count_distinct_keys payments.raw.dlq)" -eq 0 ] || fail "records were dead-lettered during the outage"
say "vault outage: $N records, $deliveries deliveries, no rebalance: passed"

#!/usr/bin/env bash
# End to end against real processes: Apache Kafka (single-node KRaft), OpenBao and the
# kafka-transit binary, checked with kcat the way a Kafka operator would look.
#
# An application produces 10,000 records to customers.raw at a steady rate while an
# encrypt-value runner (consumer-group assignment) moves them to customers.protected. The
# runner is killed with SIGKILL mid-stream and a new one started: it must take over once
# the group drops the dead member (session.timeout.ms), no record may be missing, no
# plaintext may reach the sink, and a decrypt pipeline must give back identical values.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=10000
RATE=500 # records per second from the application
SESSION_TIMEOUT_MS=6000
WORK=$(mktemp -d -t kafka-transit-e2e.XXXXXX)
stack_init
start_kafka
start_openbao

create_topics customers.raw:3 customers.protected:3 customers.cleartext:3 \
  customers.raw.dlq:1 customers.protected.dlq:1
vault_write transit/keys/customers '{}'

python3 - "$N" >"$WORK/records.tsv" <<'PY2'
import json, sys
for i in range(int(sys.argv[1])):
    value = {"id": i, "name": f"PLAINTEXT-NAME-{i:05d}", "card": f"4111{i:012d}"}
    print(f"customer-{i:05d}\t{json.dumps(value, separators=(',', ':'))}")
PY2
write_pipeline "$WORK/encrypt.toml" customers.raw customers.protected encrypt-value customers 'batch_size = 100'
# A short session timeout so that the group notices the killed member quickly (the
# broker's group.min.session.timeout.ms is lowered to allow it; librdkafka's default is 45 s).
source_properties "$WORK/encrypt.toml" "\"session.timeout.ms\" = \"$SESSION_TIMEOUT_MS\""
"$KAFKA_TRANSIT" validate --config "$WORK/encrypt.toml"

say "encrypt pipeline, first run (to be killed with SIGKILL)"
"$KAFKA_TRANSIT" --log-format json run --config "$WORK/encrypt.toml" >"$WORK/encrypt-1.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
# The stream starts once the runner has its partitions, so the kill below lands while
# the application is still producing, however slow the machine.
wait_for 60 "the first runner's partitions" grep -q '"source partitions assigned"' "$WORK/encrypt-1.log"
say "the application produces $N records at $RATE/s (ordinary producer batching)"
produce_at_rate customers.raw "$WORK/records.tsv" "$RATE" "$WORK/producer.log"
producer=$PRODUCER_PID

wait_for_keys customers.protected 2500 120
kill -9 "$runner"
killed_at=$(date +%s.%N)
wait "$runner" 2>/dev/null || true
before=$(count_distinct_keys customers.protected)
say "killed the runner with $before of $N records on customers.protected"
[ "$before" -lt "$N" ] || fail "the run finished before the kill: nothing was tested"

say "encrypt pipeline, restarted in the same consumer group (JSON logs, kafka_transit at debug level)"
RUST_LOG=info,kafka_transit=debug "$KAFKA_TRANSIT" --log-format json run --config "$WORK/encrypt.toml" \
  >"$WORK/encrypt-2.log" 2>&1 &
runner=$!
# Takeover: the new member gets partitions once the group has dropped the dead one,
# which the coordinator does session.timeout.ms after the dead member's last heartbeat.
wait_for_keys customers.protected $((before + 100)) 60
takeover=$(python3 - "$WORK/encrypt-2.log" "$killed_at" <<'PY2'
import datetime, json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    event = json.loads(line)
    if event["fields"].get("message") == "source partitions assigned":
        at = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        print(f"{at - float(sys.argv[2]):.1f}")
        break
PY2
)
[ -n "$takeover" ] || fail "the restarted runner logged no partition assignment"
say "the restarted runner was assigned the partitions ${takeover}s after the kill (session.timeout.ms = $SESSION_TIMEOUT_MS)"
python3 -c "import sys; sys.exit(0 if $takeover <= $SESSION_TIMEOUT_MS / 1000 + 3 else 1)" \
  || fail "takeover took ${takeover}s: more than the session timeout plus 3 s to rejoin"
wait "$producer" || fail "the application's producer failed: $(cat "$WORK/producer.log")"
wait_for_keys customers.protected "$N" 180
kill -TERM "$runner"
wait "$runner" || fail "the runner did not exit 0 on SIGTERM (log: $WORK/encrypt-2.log)"
grep -q "stopped cleanly" "$WORK/encrypt-2.log" || fail "no clean-stop line in $WORK/encrypt-2.log"
python3 - "$WORK/encrypt-2.log" <<'PY2' || fail "the JSON log has lines that are not JSON objects"
import json, sys
lines = [line for line in open(sys.argv[1]) if line.strip()]
assert all(isinstance(json.loads(line), dict) for line in lines), "not JSON"
assert any(json.loads(line)["fields"].get("message") == "progress" for line in lines), "no progress line"
PY2

say "checking customers.protected with kcat"
kcat -b "$KAFKA_BOOTSTRAP" -C -t customers.protected -o beginning -e -q -f '%k\t%s\n' >"$WORK/protected.tsv"
if grep -q 'PLAINTEXT-NAME' "$WORK/protected.tsv"; then fail "plaintext reached the sink"; fi
if cut -f2 "$WORK/protected.tsv" | grep -v '^vault:v[0-9]*:' | grep -q .; then
  fail "a value on customers.protected is not a Vault ciphertext"
fi
[ "$(cut -f1 "$WORK/protected.tsv" | sort -u | wc -l)" -eq "$N" ] || fail "records are missing on customers.protected"
[ "$(count_distinct_keys customers.raw.dlq)" -eq 0 ] || fail "records were dead-lettered"
say "all $N records arrived encrypted: $(wc -l <"$WORK/protected.tsv") deliveries, $(( $(wc -l <"$WORK/protected.tsv") - N )) duplicates from the kill (at-least-once)"

say "decrypt pipeline"
write_pipeline "$WORK/decrypt.toml" customers.protected customers.cleartext decrypt-value customers
"$KAFKA_TRANSIT" run --config "$WORK/decrypt.toml" >"$WORK/decrypt.log" 2>&1 &
runner=$!
wait_for_keys customers.cleartext "$N" 180
kill -TERM "$runner"
wait "$runner" || fail "the decrypt runner did not exit 0 on SIGTERM (log: $WORK/decrypt.log)"
kcat -b "$KAFKA_BOOTSTRAP" -C -t customers.cleartext -o beginning -e -q -f '%k\t%s\n' >"$WORK/cleartext.tsv"
python3 - "$WORK/records.tsv" "$WORK/cleartext.tsv" <<'PY'
import sys
def load(path):
    records = {}
    for line in open(path, encoding="utf-8"):
        key, _, value = line.rstrip("\n").partition("\t")
        records.setdefault(key, set()).add(value)
    return records
original, decrypted = load(sys.argv[1]), load(sys.argv[2])
assert set(original) == set(decrypted), f"{len(set(original) - set(decrypted))} keys missing"
bad = [k for k, values in decrypted.items() if values != original[k]]
assert not bad, f"{len(bad)} records differ after decryption, e.g. {bad[:3]}"
print(f"{len(original)} records decrypted byte-identical")
PY
if grep -q -- "$VAULT_TOKEN" "$WORK"/*.log; then fail "the Vault token appears in a runner log"; fi
if grep -q 'PLAINTEXT-NAME' "$WORK"/encrypt-*.log; then fail "record contents appear in a runner log"; fi
say "end-to-end pipeline: passed"

#!/usr/bin/env bash
# Scale-out end to end on Apache Kafka and OpenBao: three runners with the same config
# share a 6-partition topic in one consumer group while an application produces at a
# steady rate; one runner is killed with SIGKILL mid-stream and the others take its
# partitions once the group drops it (session.timeout.ms); later a fourth runner joins
# and gets partitions, and the stream goes on a while longer. Every record must arrive
# encrypted; the duplicates the kill causes (at-least-once) and the takeover time are
# reported.
#
#   bash .ci/e2e/scale-out.sh [at-least-once|exactly-once]
#
# With exactly-once (pipeline.delivery) the kill must cause no duplicate at all for a
# read_committed reader.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

DELIVERY=${1:-at-least-once}
case $DELIVERY in at-least-once | exactly-once) ;; *) fail "usage: $0 [at-least-once|exactly-once]" ;; esac
RATE=500 # records per second, produced until the script says stop
SESSION_TIMEOUT_MS=6000
TRANSACTION_TIMEOUT_S=60 # the sink producer's transaction.timeout.ms (librdkafka's default)
WORK=$(mktemp -d -t kafka-transit-scale-out.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics events.raw:6 events.protected:6 events.raw.dlq
vault_write transit/keys/events '{}'
vault_write transit/keys/kafka-transit-offsets '{}'  # signs exactly-once positions (pipeline.offsets_key)

write_pipeline "$WORK/encrypt.toml" events.raw events.protected encrypt-value events \
  "batch_size = 100
delivery = \"$DELIVERY\""
source_properties "$WORK/encrypt.toml" "\"session.timeout.ms\" = \"$SESSION_TIMEOUT_MS\""

declare -A RUNNER
start_runner() { # NAME
  "$KAFKA_TRANSIT" --log-format json run --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  RUNNER[$1]=$!
  STACK_PIDS+=("$!")
}
# assigned_after EPOCH NAME...: seconds from EPOCH to the first assignment of at least
# one partition logged by one of the runners after EPOCH (nothing if none yet).
assigned_after() {
  python3 - "$WORK" "$@" <<'PY'
import datetime, json, sys
work, since, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
times = []
for name in names:
    for line in open(f"{work}/{name}.log", encoding="utf-8"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event["fields"]
        at = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        if at > since and fields.get("message") == "source partitions assigned" and fields.get("partitions", 0) > 0:
            times.append(at - since)
if times:
    print(f"{min(times):.1f}")
PY
}
# wait_assigned SECONDS EPOCH NAME...: waits until assigned_after answers; prints it.
wait_assigned() {
  local deadline=$((SECONDS + $1)) answer
  shift
  until answer=$(assigned_after "$@") && [ -n "$answer" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no partitions assigned to ${*:2} within the wait"
    sleep 0.2
  done
  echo "$answer"
}

say "three runners in one group"
started=$(date +%s.%N)
for name in a b c d; do cp "$WORK/encrypt.toml" "$WORK/$name.toml"; done
for name in a b c; do start_runner "$name"; done
for name in a b c; do wait_assigned 60 "$started" "$name" >/dev/null; done

say "the application produces at $RATE records/s until told to stop"
python3 - "$KAFKA_BOOTSTRAP" "$RATE" "$WORK" >"$WORK/producer.log" 2>&1 <<'PY' &
import os, sys, time
from confluent_kafka import Producer
bootstrap, rate, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
started = time.monotonic()
i = 0
while not os.path.exists(f"{work}/stop"):
    producer.produce("events.raw", key=f"event-{i:06d}", value=f'{{"event":{i},"secret":"PLAINTEXT-{i:06d}"}}')
    producer.poll(0)
    i += 1
    ahead = i / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)
assert producer.flush(60) == 0, "records left unsent"
open(f"{work}/produced", "w").write(str(i))
PY
producer=$!
STACK_PIDS+=("$producer")

wait_for_keys events.protected 2000 120
kill -9 "${RUNNER[b]}"
killed_at=$(date +%s.%N)
say "killed runner b with $(count_distinct_keys events.protected) records on events.protected"
# Exactly-once (on one cluster here): a new owner also waits for the offsets the killed
# runner's open transaction had already sent, until the broker aborts that transaction,
# the sink's transaction.timeout.ms (60 s) after it began (docs/guarantees.md, "The price
# of one producer"); whether it had sent them depends on when the kill lands.
wait=60 slack=5
[ "$DELIVERY" = exactly-once ] && wait=$((60 + TRANSACTION_TIMEOUT_S)) slack=$((10 + TRANSACTION_TIMEOUT_S))
takeover=$(wait_assigned "$wait" "$killed_at" a c)
say "runners a and c took over b's partitions ${takeover}s after the kill (session.timeout.ms = $SESSION_TIMEOUT_MS)"
python3 -c "import sys; sys.exit(0 if $takeover <= $SESSION_TIMEOUT_MS / 1000 + $slack else 1)" \
  || fail "takeover took ${takeover}s"

say "runner d joins"
joined_at=$(date +%s.%N)
start_runner d
joined=$(wait_assigned 60 "$joined_at" d)
say "runner d was assigned partitions ${joined}s after it started"
sleep 5 # the stream goes on with a, c and d
touch "$WORK/stop"
wait "$producer" || fail "the application's producer failed: $(cat "$WORK/producer.log")"
N=$(cat "$WORK/produced")
say "the application produced $N records"
wait_for_keys events.protected "$N" 180
for name in a c d; do kill -TERM "${RUNNER[$name]}"; done
for name in a c d; do
  wait "${RUNNER[$name]}" || fail "runner $name did not exit 0 on SIGTERM (log: $WORK/$name.log)"
done

admin_kcat -C -t events.protected -o beginning -e -q -f '%k\t%s\n' 2>/dev/null >"$WORK/protected.tsv"
if grep -q 'PLAINTEXT-' "$WORK/protected.tsv"; then fail "plaintext reached the sink"; fi
if cut -f2 "$WORK/protected.tsv" | grep -v '^vault:v[0-9]*:' | grep -q .; then
  fail "a value on events.protected is not a Vault ciphertext"
fi
[ "$(cut -f1 "$WORK/protected.tsv" | sort -u | wc -l)" -eq "$N" ] || fail "records are missing on events.protected"
[ "$(count_distinct_keys events.raw.dlq)" -eq 0 ] || fail "records were dead-lettered"

python3 - "$WORK" "$N" "$DELIVERY" <<'PY'
import json, sys
work, n, delivery = sys.argv[1], int(sys.argv[2]), sys.argv[3]
finals = {}
for name in "acd":
    for line in open(f"{work}/{name}.log", encoding="utf-8"):
        fields = json.loads(line)["fields"]
        if fields.get("message") == "final":
            finals[name] = fields
deliveries = sum(1 for _ in open(f"{work}/protected.tsv"))
print("   records out: " + ", ".join(f"{name} {finals[name]['records_out']}" for name in "acd"))
print(f"   {n} records, {deliveries} deliveries (read_committed): {deliveries - n} duplicates ({delivery}, from the kill)")
assert finals["d"]["records_out"] > 0, "the fourth runner moved no records"
if delivery == "exactly-once":
    assert deliveries == n, f"{deliveries - n} duplicates in exactly-once mode"
PY
say "scale-out ($DELIVERY): passed"

#!/usr/bin/env bash
# Hot swap of the policy on Apache Kafka and OpenBao, with the release binary: the runner
# starts on an exported encrypt-value.wasm (policy.path); while 20,000 records stream
# through, the file is replaced (mv, atomic) by envelope-seal. Every record must reach
# the sink once, each a Vault ciphertext or an envelope, with exactly one switch per
# partition. Then a broken .wasm is refused (the runner keeps sealing), and SIGHUP after
# rewriting [policy] switches to encrypt-fields with its own [policy.config]. Last,
# POST /admin/policy/reload on the admin listener: a [policy.config] the policy rejects
# is answered 422 and refused, a good one 200; /metrics counts the reloads and names the
# policy in use.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=20000
PARTITIONS=4
RATE=2500
WORK=$(mktemp -d -t kafka-transit-swap.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics orders.raw:$PARTITIONS orders.protected:$PARTITIONS orders.raw.dlq
vault_write transit/keys/orders '{}'

"$KAFKA_TRANSIT" policy export encrypt-value --output "$WORK/policy.wasm"
"$KAFKA_TRANSIT" policy export envelope-seal --output "$WORK/envelope-seal.wasm"
write_pipeline "$WORK/swap.toml" orders.raw orders.protected encrypt-value orders 'batch_size = 200'
python3 - "$WORK/swap.toml" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
text = text.replace('builtin = "encrypt-value"\n', 'path = "policy.wasm"\nwatch_interval = "500ms"\n', 1)
open(path, "w", encoding="utf-8").write(text)
PY
ADMIN_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN="http://127.0.0.1:$ADMIN_PORT"
# The reload endpoint needs its bearer token (off without one).
openssl rand -hex 32 >"$WORK/reload-token"
printf '\n[admin]\nlisten = "127.0.0.1:%s"\nreload_token_file = "%s"\n' "$ADMIN_PORT" "$WORK/reload-token" >>"$WORK/swap.toml"
"$KAFKA_TRANSIT" --log-format json run --config "$WORK/swap.toml" >"$WORK/runner.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
wait_for 60 "the runner's partitions" grep -q '"source partitions assigned"' "$WORK/runner.log"

# log_count TEXT: log lines whose message starts with TEXT.
log_count() {
  python3 - "$WORK/runner.log" "$1" <<'PY'
import json, sys
count = 0
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        message = json.loads(line)["fields"].get("message", "")
    except (ValueError, KeyError):
        continue
    count += message.startswith(sys.argv[2])
print(count)
PY
}
log_has() { [ "$(log_count "$1")" -ge "$2" ]; }

# produce PREFIX COUNT [json]: records PREFIX-00000..., plaintext or JSON values.
produce() {
  python3 - "$KAFKA_BOOTSTRAP" "$1" "$2" "${3:-}" <<'PY'
import json, sys
from confluent_kafka import Producer
bootstrap, prefix, count, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
for i in range(count):
    value = (json.dumps({"card": f"4111-0000-{i:05d}", "city": f"CITY-{i:05d}"}) if kind == "json"
             else f"PLAINTEXT-ORDER-{prefix}-{i:05d}")
    producer.produce("orders.raw", key=f"{prefix}-{i:05d}", value=value)
assert producer.flush(60) == 0
PY
}

for i in $(seq 0 $((N - 1))); do printf 'order-%05d\tPLAINTEXT-ORDER-%05d\n' "$i" "$i"; done >"$WORK/orders.tsv"
produce_at_rate orders.raw "$WORK/orders.tsv" "$RATE" "$WORK/producer.log"
say "streaming $N records at $RATE/s; replacing policy.wasm (mv) once 5000 have arrived"
wait_for_keys orders.protected 5000 120 "log: $WORK/runner.log"
cp "$WORK/envelope-seal.wasm" "$WORK/policy.wasm.new"
mv -f "$WORK/policy.wasm.new" "$WORK/policy.wasm"
wait_for 60 "the swap to envelope-seal" log_has "policy swapped" 1
swapped_at=$(count_distinct_keys orders.protected)
wait "$PRODUCER_PID" || fail "the producer did not deliver every record (log: $WORK/producer.log)"
[ "$swapped_at" -lt "$N" ] || fail "the swap came after the stream ended: nothing was swapped mid-stream"
wait_for_keys orders.protected "$N" 120 "log: $WORK/runner.log"

# check_protected EXPECTED [LATE_PREFIX LATE_KIND]...: every record on the sink once, each a
# Vault ciphertext or an envelope (JSON with an encrypted card for "fields"), one switch
# from vault: to envelope per partition; records of LATE_PREFIX are all of LATE_KIND.
check_protected() {
  python3 - "$KAFKA_BOOTSTRAP" "$@" <<'PY'
import json, sys
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

bootstrap, expected = sys.argv[1], int(sys.argv[2])
late = dict(zip(sys.argv[3::2], sys.argv[4::2]))
topic = "orders.protected"

def kind(value: bytes) -> str:
    if value.startswith(b"vault:v1:"):
        return "vault"
    # The envelope format (docs/envelope-format.md): version 2 (1 is still read), then the
    # key name and the wrapped data key, each with a big-endian u16 length.
    if value[:1] in (b"\x01", b"\x02") and len(value) > 3:
        name_len = int.from_bytes(value[1:3], "big")
        at = 3 + name_len
        wrapped_len = int.from_bytes(value[at:at + 2], "big")
        if value[3:at] == b"orders" and value[at + 2:at + 2 + wrapped_len].startswith(b"vault:v"):
            return "envelope"
    try:
        doc = json.loads(value)
        if doc["card"].startswith("vault:v1:") and doc["city"].startswith("CITY-"):
            return "fields"
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    raise SystemExit(f"neither a Vault ciphertext, an envelope nor encrypted fields: {value[:80]!r}")

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hot-swap-check",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "isolation.level": "read_committed"})
partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends if ends[p] > 0])
pending = {p for p in ends if ends[p] > 0}
kinds, keys, total = {p: [] for p in ends}, set(), 0
while pending:
    message = consumer.poll(10)
    if message is None:
        raise SystemExit(f"partitions {sorted(pending)} not read to their end")
    if message.error():
        if message.error().code() == -191:  # _PARTITION_EOF
            pending.discard(message.partition())
            continue
        raise SystemExit(str(message.error()))
    key = message.key().decode()
    this = kind(message.value())
    for prefix, want in late.items():
        if key.startswith(prefix + "-") and this != want:
            raise SystemExit(f"{key}: {this}, expected {want}")
    total += 1
    keys.add(key)
    if this != "fields":
        kinds[message.partition()].append(this)
    if message.offset() + 1 >= ends[message.partition()]:
        pending.discard(message.partition())
consumer.close()
if total != expected or len(keys) != expected:
    raise SystemExit(f"{total} records, {len(keys)} distinct keys on the sink; expected {expected}")
for partition, seen in sorted(kinds.items()):
    switches = [(a, b) for a, b in zip(seen, seen[1:]) if a != b]
    print(f"   partition {partition}: {len(seen)} records, {seen.count('vault')} vault:, "
          f"{seen.count('envelope')} envelopes, {len(switches)} switch(es)")
    if switches != [("vault", "envelope")] or seen[0] != "vault":
        raise SystemExit(f"partition {partition}: expected exactly one switch from vault: to envelope, got {switches}")
print(f"   {total} records, {len(keys)} distinct keys")
PY
}
check_protected "$N" || fail "see above (log: $WORK/runner.log)"
say "swap mid-stream: $N records, $swapped_at on the sink when the swap was logged"

printf 'not a wasm component' >"$WORK/policy.wasm.new"
mv -f "$WORK/policy.wasm.new" "$WORK/policy.wasm"
wait_for 30 "the broken component's refusal" log_has "policy reload refused" 1
produce late 100
wait_for_keys orders.protected $((N + 100)) 60 "log: $WORK/runner.log"
check_protected $((N + 100)) late envelope >/dev/null || fail "after the refusal (log: $WORK/runner.log)"
kill -0 "$runner" || fail "the runner died after the refusal (log: $WORK/runner.log)"
say "broken component refused; the runner kept sealing (100 more records, all envelopes)"

python3 - "$WORK/swap.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
policy = '[policy]\nbuiltin = "encrypt-fields"\n[policy.config]\nkey = "orders"\nfields = ["/card"]\n\n'
text, replaced = re.subn(r"\[policy\]\n.*?\n\n", policy, text, count=1, flags=re.S)
assert replaced == 1, text
open(path, "w", encoding="utf-8").write(text)
PY
kill -HUP "$runner"
wait_for 60 "the swap to encrypt-fields after SIGHUP" log_has "policy swapped" 2
produce json 100 json
wait_for_keys orders.protected $((N + 200)) 60 "log: $WORK/runner.log"
check_protected $((N + 200)) late envelope json fields || fail "after SIGHUP (log: $WORK/runner.log)"
say "SIGHUP: [policy] re-read, encrypt-fields with its own [policy.config] in use"

# set_fields JSON_LIST: [policy.config] fields of the pipeline file.
set_fields() { sed -i "s|^fields = .*|fields = $1|" "$WORK/swap.toml"; }
reload() {
  curl -sS -o "$WORK/reload.json" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $(cat "$WORK/reload-token")" "$ADMIN/admin/policy/reload"
}
status=$(curl -sS -o "$WORK/reload.json" -w '%{http_code}' -X POST "$ADMIN/admin/policy/reload")
[ "$status" = 401 ] || fail "a reload without the token answered $status: $(cat "$WORK/reload.json")"
say "POST /admin/policy/reload without the reload token: 401"
set_fields '"not a list"'
status=$(reload)
[ "$status" = 422 ] || fail "a rejected [policy.config] answered $status: $(cat "$WORK/reload.json")"
grep -q '"reloaded":false' "$WORK/reload.json" || fail "unexpected refusal body: $(cat "$WORK/reload.json")"
say "POST /admin/policy/reload with a bad [policy.config]: 422 $(cat "$WORK/reload.json")"
set_fields '["/card"]'
status=$(reload)
[ "$status" = 200 ] || fail "a good reload answered $status: $(cat "$WORK/reload.json")"
wait_for 30 "the swap after POST /admin/policy/reload" log_has "policy swapped" 3
python3 "$REPO_ROOT/demos/lib/scrape.py" metrics "$ADMIN" >"$WORK/samples.txt"
grep -qx 'kafka_transit_policy_reloads_total{outcome="applied"} 3' "$WORK/samples.txt" \
  && grep -qx 'kafka_transit_policy_reloads_total{outcome="refused"} 2' "$WORK/samples.txt" \
  && grep -q '^kafka_transit_policy_info{digest="sha256:[0-9a-f]*",name="encrypt-fields"} 1$' "$WORK/samples.txt" \
  || fail "/metrics does not count the reloads: $(grep policy "$WORK/samples.txt")"
say "POST /admin/policy/reload: 200 $(cat "$WORK/reload.json"); /metrics: $(grep -c policy_reloads "$WORK/samples.txt") reload series, policy_info names encrypt-fields"

kill -TERM "$runner"
wait "$runner" || fail "the runner did not exit 0 on SIGTERM (log: $WORK/runner.log)"
swaps=$(log_count "policy swapped")
refusals=$(log_count "policy reload refused")
[ "$swaps" -eq 3 ] || fail "$swaps swaps logged, expected 3 (log: $WORK/runner.log)"
[ "$refusals" -eq 2 ] || fail "$refusals refusals logged, expected 2 (log: $WORK/runner.log)"
[ "$(count_distinct_keys orders.raw.dlq)" -eq 0 ] || fail "records were dead-lettered"
if admin_kcat -C -t orders.protected -o beginning -e -q 2>/dev/null | grep -q 'PLAINTEXT-ORDER\|4111-0000'; then
  fail "plaintext reached the sink"
fi
say "hot swap: $((N + 200)) records, $swaps swaps, $refusals refusals, no plaintext, nothing dead-lettered: passed"

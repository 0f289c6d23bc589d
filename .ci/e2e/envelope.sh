#!/usr/bin/env bash
# Envelope encryption end to end against real processes: records of 1 KiB to 20 MiB go
# raw -> envelope-seal -> envelope-open through Apache Kafka, with OpenBao holding the
# key, and come back byte-identical; the Python reference decryptor (hvac + cryptography, no kafka-transit
# code) opens what the host sealed; a record too large for the sink is dead-lettered
# with an error naming the setting, not dropped and not hung on.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

WORK=$(mktemp -d -t kafka-transit-envelope.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics big.raw big.sealed big.opened big.raw.dlq big.sealed.dlq small.raw:3 small.sealed:3 small.raw.dlq
vault_write transit/keys/customers '{}'

say "producing 1, 5 and 20 MiB records and 1,000 small ones"
python3 - "$KAFKA_BOOTSTRAP" "$WORK" <<'PY'
import hashlib, json, os, sys
from confluent_kafka import Producer
bootstrap, work = sys.argv[1], sys.argv[2]
producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 32 * 1024 * 1024})
digests = {}
for name, size in [("one-mib", 1 << 20), ("five-mib", 5 << 20), ("twenty-mib", 20 << 20)]:
    value = os.urandom(size)
    digests[name] = hashlib.sha256(value).hexdigest()
    producer.produce("big.raw", key=name, value=value)
    producer.flush(60)
with open(f"{work}/small.tsv", "w") as small:
    for i in range(1000):
        value = json.dumps({"id": i, "name": f"PLAINTEXT-{i}"})
        small.write(f"small-{i}\t{value}\n")
        producer.produce("small.raw", key=f"small-{i}", value=value)
producer.flush(60)
json.dump(digests, open(f"{work}/digests.json", "w"))
PY

big_settings='max_record_bytes = 25165824
max_batch_bytes = 25165824'
write_pipeline "$WORK/seal.toml" big.raw big.sealed envelope-seal customers "$big_settings"
write_pipeline "$WORK/open.toml" big.sealed big.opened envelope-open customers "$big_settings"
write_pipeline "$WORK/small.toml" small.raw small.sealed envelope-seal customers

say "envelope-seal and envelope-open on 1, 5 and 20 MiB records"
run_until "$WORK/seal.toml" big.sealed 3 "$WORK/seal.log"
run_until "$WORK/open.toml" big.opened 3 "$WORK/open.log"
python3 - "$KAFKA_BOOTSTRAP" "$WORK/digests.json" <<'PY'
import hashlib, json, sys
sys.path.insert(0, "demos/python")
from envelope_decrypt import read_topic
bootstrap, expected = sys.argv[1], json.load(open(sys.argv[2]))
sealed = {m.key().decode(): m.value() for m in read_topic(bootstrap, "big.sealed", 3)}
opened = {m.key().decode(): m.value() for m in read_topic(bootstrap, "big.opened", 3)}
for key, digest in expected.items():
    assert sealed[key][0] == 2, f"{key} on big.sealed is not an envelope"
    assert hashlib.sha256(opened[key]).hexdigest() == digest, f"{key} differs after the round trip"
    print(f"  {key}: {len(opened[key]):>9} bytes, sealed {len(sealed[key]):>9} bytes, identical")
PY

say "Python reference decryptor on what the host sealed"
run_until "$WORK/small.toml" small.sealed 1000 "$WORK/small.log"
python3 demos/python/envelope_decrypt.py topic --bootstrap "$KAFKA_BOOTSTRAP" \
  --topic small.sealed --count 1000 --expect "$WORK/small.tsv" --show 2

say "a record too large for the sink is dead-lettered naming the setting"
[ "$(count_distinct_keys big.raw.dlq)" -eq 0 ] || fail "records were dead-lettered by the round trip"
write_pipeline "$WORK/too-large.toml" big.raw big.too-small envelope-seal customers "$big_settings"
python3 - "$WORK/too-large.toml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read().replace(
    'topic = "big.too-small"', 'topic = "big.too-small"\n[sink.properties]\n"message.max.bytes" = 2000000', 1)
text = text.replace('group_id = "kafka-transit-envelope-seal-big.raw"', 'group_id = "too-large"')
open(path, "w").write(text)
PY
create_topics big.too-small
"$KAFKA_TRANSIT" run --config "$WORK/too-large.toml" >"$WORK/too-large.log" 2>&1 &
runner=$!
wait_for_keys big.raw.dlq 2 120
kill -TERM "$runner"
wait "$runner" || fail "kafka-transit did not stop cleanly (log: $WORK/too-large.log)"
kcat -b "$KAFKA_BOOTSTRAP" -C -t big.raw.dlq -o beginning -e -q -f '%k %h\n' >"$WORK/dlq.txt"
grep -q 'kafka-transit.error.kind=sink-rejected' "$WORK/dlq.txt" || fail "no sink-rejected dead letter: $(cat "$WORK/dlq.txt")"
grep -q 'message.max.bytes' "$WORK/dlq.txt" || fail "the dead letter does not name the setting"
[ "$(count_distinct_keys big.too-small)" -eq 1 ] || fail "the 1 MiB record should have reached the sink"
say "envelope end-to-end: passed"

#!/usr/bin/env bash
# Demo 3: multi-megabyte records (1, 8 and 20 MiB) with envelope encryption.
#
# Vault's transit engine takes at most about 1 MiB of base64 per value, so large
# records use envelope-seal: kafka-transit encrypts each value locally with AES-256-GCM
# under a data key that Vault generated and wrapped; Vault sees one request per data key,
# not the records. envelope-open (or any AES-GCM library plus a Vault client) reverses it.
#
#   producer.py ──▶ raw ──▶ kafka-transit envelope-seal ──▶ sealed ──▶ kafka-transit envelope-open ──▶ opened
#                                                                  └─▶ consumer.py (hvac + cryptography)
#
# Checks: every record comes back with the same sha256; sealed records are envelopes;
# the Python reference decryptor opens a sealed record to the original.
set -euo pipefail
DEMOS="$(cd "$(dirname "$0")" && pwd)"
source "$DEMOS/lib/stack.sh"

SIZES_MIB=(1 8 20)
# Every place Kafka limits a record's size must allow the largest one (20 MiB plus the
# ~150-byte envelope): kafka-transit sizes its own clients from max_record_bytes.
MAX_RECORD_BYTES=25165824   # 24 MiB: pipeline.max_record_bytes
MAX_BATCH_BYTES=25165824    # 24 MiB: pipeline.max_batch_bytes, at least one record
PRODUCER_MAX_BYTES=26214400 # 25 MiB: message.max.bytes of the application's producer
WORK=$(mktemp -d -t kafka-transit-demo03.XXXXXX)
printf '\n\033[1;34m=== Demo 3: 1, 8 and 20 MiB records through envelope encryption ===\033[0m\n'
demo_stack
T="demo03.documents"
RAW="$T.raw$DEMO_TOPIC_SUFFIX" SEALED="$T.sealed$DEMO_TOPIC_SUFFIX" OPENED="$T.opened$DEMO_TOPIC_SUFFIX"
create_topics "$RAW" "$SEALED" "$OPENED" "$RAW.dlq" "$SEALED.dlq"
vault_write transit/keys/customers '{}' || fail "could not create the transit key 'customers' at $VAULT_ADDR (VAULT_TOKEN?)"

step "settings for records up to 20 MiB"
cat <<TEXT
   producer (application)   message.max.bytes        = $PRODUCER_MAX_BYTES
   kafka-transit            pipeline.max_record_bytes = $MAX_RECORD_BYTES (sizes its fetch/produce limits: x1.5)
   kafka-transit            pipeline.max_batch_bytes  = $MAX_BATCH_BYTES
   broker                   message.max.bytes (.ci/kafka/kafka.sh: 64 MiB; docker-compose.yml sets KAFKA_MESSAGE_MAX_BYTES)
TEXT

step "the application writes ${SIZES_MIB[*]} MiB records to $RAW"
started=$(clock)
python3 "$DEMOS/python/producer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$RAW" \
  --sizes-mib "${SIZES_MIB[@]}" --message-max-bytes "$PRODUCER_MAX_BYTES" --out "$WORK/documents.tsv"
count=${#SIZES_MIB[@]}

settings="max_record_bytes = $MAX_RECORD_BYTES
max_batch_bytes = $MAX_BATCH_BYTES"
write_pipeline "$WORK/seal.toml" "$RAW" "$SEALED" envelope-seal customers "$settings"
write_pipeline "$WORK/open.toml" "$SEALED" "$OPENED" envelope-open customers "$settings"
"$KAFKA_TRANSIT" validate --config "$WORK/seal.toml" >/dev/null
"$KAFKA_TRANSIT" validate --config "$WORK/open.toml" >/dev/null

step "kafka-transit run: envelope-seal $RAW -> $SEALED"
run_pipeline_until "$WORK/seal.toml" "$SEALED" "$count" "$WORK/seal.log"

step "what the Kafka administrator sees on $SEALED (any consumer: key, size, first bytes)"
# The envelope header names the transit key and carries the wrapped data key, which
# only Vault can unwrap; the rest is AES-GCM ciphertext.
python3 - "$DEMOS/python" "$KAFKA_BOOTSTRAP" "$SEALED" "$count" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from envelope_decrypt import FORMAT_VERSION, read_topic
for message in read_topic(sys.argv[2], sys.argv[3], int(sys.argv[4])):
    value = message.value()
    assert value[0] == FORMAT_VERSION, f"{message.key()!r} is not an envelope"
    shown = value[:72].decode("ascii", errors="replace")
    shown = "".join(c if c.isprintable() and c != "\ufffd" else "." for c in shown)
    print(f"   {message.key().decode():<15} {len(value):>10,} bytes | {shown}…")
PY
check "every sealed record is an envelope (format version 2)"

step "kafka-transit run: envelope-open $SEALED -> $OPENED"
run_pipeline_until "$WORK/open.toml" "$OPENED" "$count" "$WORK/open.log"

step "sha256 after the round trip (what the consumer of $OPENED gets)"
python3 - "$DEMOS/python" "$KAFKA_BOOTSTRAP" "$SEALED" "$OPENED" "$count" "$WORK/documents.tsv" <<'PY'
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from envelope_decrypt import read_topic
bootstrap, sealed_topic, opened_topic, count, originals = sys.argv[2:7]
expected = {}
for line in open(originals, encoding="utf-8"):
    key, digest, size = line.rstrip("\n").split("\t")
    expected[key] = (digest, int(size))
sealed = {m.key().decode(): len(m.value()) for m in read_topic(bootstrap, sealed_topic, int(count))}
opened = {m.key().decode(): m.value() for m in read_topic(bootstrap, opened_topic, int(count))}
print(f"   {'record':<15} {'original':>12} {'sealed':>12} {'overhead':>9}  sha256 (original = opened)")
bad = []
for key, (digest, size) in expected.items():
    got = hashlib.sha256(opened.get(key, b"")).hexdigest()
    same = got == digest and len(opened.get(key, b"")) == size
    bad += [] if same else [key]
    print(f"   {key:<15} {size:>12,} {sealed[key]:>12,} {sealed[key] - size:>8,}B  "
          f"{digest[:16]}… {'identical' if same else 'DIFFERS: ' + got[:16]}")
sys.exit(f"{bad} differ after the round trip" if bad else 0)
PY
check "all $count records identical after envelope-seal + envelope-open"

step "the Python reference decryptor opens a sealed record (hvac unwraps the data key, cryptography opens it)"
python3 "$DEMOS/python/consumer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$SEALED" \
  --count 1 --expect-sha256 "$WORK/documents.tsv"
check "consumer.py opened what kafka-transit sealed"
[ "$(count_distinct_keys "$RAW.dlq")" -eq 0 ] || fail "records were dead-lettered on $RAW.dlq"
echo "   demo total: $(since "$started") for $(IFS=+; echo "${SIZES_MIB[*]}") MiB, sealed and opened"
echo "demo 03: passed"

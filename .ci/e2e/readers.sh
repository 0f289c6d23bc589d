#!/usr/bin/env bash
# The Java and Go readers (clients/) against what the host wrote, through real processes:
# records of known content (JSON text, binary values, an empty value, a 1 MiB value, a
# tombstone) go raw -> envelope-seal and raw -> encrypt-value through Apache Kafka, with
# OpenBao over TLS holding the key; then a Java consumer (kafka-clients with
# KafkaTransitDeserializer configured by properties alone, HostOutputIT under mvn verify)
# and the Go package (go test, on the values as the host wrote them to Kafka) read both
# topics back and compare byte for byte, with a token that may only decrypt with that
# key; a tampered envelope and a wrong token are refused by both, the Java consumer
# naming partition and offset; a value encrypted in a Vault namespace decrypts with
# the namespace set, and only then.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

WORK=$(mktemp -d -t kafka-transit-readers.XXXXXX)
stack_init
start_kafka
start_openbao --tls
create_topics readers.raw:2 readers.sealed:2 readers.encrypted:2 readers.raw.dlq readers.tampered
vault_write transit/keys/customers '{}'

# vault_call NAMESPACE PATH JSON: Vault's answer to a POST with the root token ("" for the root namespace).
vault_call() {
  curl -sf --cacert "$VAULT_CACERT" -X POST -H "X-Vault-Token: $VAULT_TOKEN" ${1:+-H "X-Vault-Namespace: $1"} \
    -d "$3" "$VAULT_ADDR/v1/$2"
}
json_field() { python3 -c 'import json, sys; d = json.load(sys.stdin); [d := d[k] for k in sys.argv[1:]]; print(d)' "$@"; }
say "the readers' token may only decrypt with key customers; a namespace with its own transit key"
vault_call "" sys/policies/acl/kafka-transit-reader \
  '{"policy": "path \"transit/decrypt/customers\" { capabilities = [\"update\"] }"}' >/dev/null
vault_call "" auth/token/create '{"policies": ["kafka-transit-reader"], "ttl": "1h"}' \
  | json_field auth client_token >"$WORK/token"
vault_call "" sys/namespaces/team-a '{}' >/dev/null
vault_call team-a sys/mounts/transit '{"type": "transit"}' >/dev/null
vault_call team-a transit/keys/customers '{}' >/dev/null
vault_call team-a transit/encrypt/customers "{\"plaintext\": \"$(printf 'hello from namespace team-a' | base64)\"}" \
  | json_field data ciphertext >"$WORK/namespace-value.txt"

say "producing 303 records of known content (JSON, binary, empty, 1 MiB, a tombstone)"
python3 - "$KAFKA_BOOTSTRAP" "$WORK/expected" <<'PY'
import json, os, random, sys
from confluent_kafka import Producer
bootstrap, expected = sys.argv[1], sys.argv[2]
os.makedirs(expected)
records = {f"json-{i}": json.dumps({"id": i, "name": f"PLAINTEXT-{i}", "note": "é ✓"}).encode() for i in range(200)}
rng = random.Random(13)
for i in range(100):
    records[f"bin-{i}"] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2048)))
records["bin-0"] = b"\x01" + records["bin-0"]      # looks like an envelope before sealing
records["bin-1"] = b"vault:v1:" + records["bin-1"]  # looks like Vault's ciphertext before encrypting
records["empty"] = b""
records["one-mib"] = os.urandom(1 << 20)
records["tombstone"] = None
producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 << 20, "linger.ms": 20})
for key, value in records.items():
    producer.produce("readers.raw", key=key, value=value)
    suffix = ".null" if value is None else ".bin"
    with open(os.path.join(expected, key + suffix), "wb") as out:
        out.write(value or b"")
assert producer.flush(60) == 0, "records not acknowledged"
PY
COUNT=303

settings='max_record_bytes = 4194304
max_batch_bytes = 8388608'
for policy in envelope-seal:readers.sealed encrypt-value:readers.encrypted; do
  write_pipeline "$WORK/${policy%%:*}.toml" readers.raw "${policy#*:}" "${policy%%:*}" customers "$settings"
  sed -i "s|^token_env = \"VAULT_TOKEN\"|&\nca_cert = \"$VAULT_CACERT\"|" "$WORK/${policy%%:*}.toml"
done

say "the host seals (envelope-seal) and encrypts (encrypt-value) them"
run_pipeline_until "$WORK/envelope-seal.toml" readers.sealed $COUNT "$WORK/seal.log"
run_pipeline_until "$WORK/encrypt-value.toml" readers.encrypted $COUNT "$WORK/encrypt.log"
[ "$(count_distinct_keys readers.raw.dlq)" -eq 0 ] || fail "records were dead-lettered"

say "host output as written to Kafka, for the Go reader; a tampered copy of one envelope"
python3 - "$KAFKA_BOOTSTRAP" "$WORK/host-output" $COUNT <<'PY'
import os, sys
sys.path.insert(0, "demos/python")
from confluent_kafka import Producer
from envelope_decrypt import read_topic
bootstrap, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for topic in ("readers.sealed", "readers.encrypted"):
    os.makedirs(f"{out}/{topic}")
    messages = read_topic(bootstrap, topic, count)
    assert len(messages) == count, f"{topic}: {len(messages)} of {count} records"
    for m in messages:
        suffix = ".null" if m.value() is None else ".bin"
        with open(f"{out}/{topic}/{m.key().decode()}{suffix}", "wb") as f:
            f.write(m.value() or b"")
        if topic == "readers.sealed" and m.key() == b"json-7":
            good = m.value()
tampered = bytearray(good)
tampered[-1] ^= 0x01
os.makedirs(f"{out}/readers.tampered")
open(f"{out}/readers.tampered/json-7.bin", "wb").write(good)
open(f"{out}/readers.tampered/json-7-tampered.bin", "wb").write(bytes(tampered))
producer = Producer({"bootstrap.servers": bootstrap})
producer.produce("readers.tampered", key="json-7", value=good)              # offset 0
producer.produce("readers.tampered", key="json-7-tampered", value=bytes(tampered))  # offset 1
assert producer.flush(30) == 0
PY

export KAFKA_TRANSIT_E2E_BOOTSTRAP=$KAFKA_BOOTSTRAP KAFKA_TRANSIT_E2E_EXPECTED=$WORK/expected \
  KAFKA_TRANSIT_E2E_COUNT=$COUNT KAFKA_TRANSIT_E2E_TOKEN_FILE=$WORK/token \
  KAFKA_TRANSIT_E2E_HOST_OUTPUT=$WORK/host-output KAFKA_TRANSIT_E2E_NAMESPACE_VALUE=$WORK/namespace-value.txt

say "Java: a kafka-clients consumer with KafkaTransitDeserializer (HostOutputIT, mvn verify)"
started=$SECONDS
(cd clients/java && nice -n 10 mvn -q -B verify -Dit.test=HostOutputIT >"$WORK/mvn.log" 2>&1) \
  || { cat "$WORK/mvn.log"; for report in clients/java/target/failsafe-reports/*.txt; do cat "$report"; done; fail "the Java reader"; }
output=clients/java/target/failsafe-reports/io.kafkatransit.client.HostOutputIT-output.txt
grep '^java reader:' "$output" || fail "HostOutputIT did not run (log: $WORK/mvn.log)"
grep -q 'Skipped: 0' clients/java/target/failsafe-reports/io.kafkatransit.client.HostOutputIT.txt \
  || fail "HostOutputIT was skipped"
echo "   Java: $((SECONDS - started))s"

say "Go: Open and DecryptValue on the host's output (go test -run 'TestHostOutput|TestNamespace')"
started=$SECONDS
(cd clients/go && nice -n 10 go test -count=1 -run 'TestHostOutput|TestNamespace' -v ./... >"$WORK/go.log" 2>&1) \
  || { cat "$WORK/go.log"; fail "the Go reader"; }
grep 'go reader:' "$WORK/go.log" || fail "TestHostOutput did not run (log: $WORK/go.log)"
! grep -q -- '--- SKIP' "$WORK/go.log" || fail "a Go end-to-end test was skipped (log: $WORK/go.log)"
echo "   Go: $((SECONDS - started))s"
say "readers end-to-end: passed"

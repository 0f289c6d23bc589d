#!/usr/bin/env bash
# Key rotation end to end against real processes (Apache Kafka, OpenBao, the release
# binary): records are encrypted under version 1 of the transit key (encrypt-value and
# envelope-seal), the key is rotated, rewrap-value and envelope-rewrap move them to
# version 2 in new topics, and min_decryption_version is raised to 2. Then independent
# clients - Python hvac for the values, the reference envelope decryptor for envelopes,
# no kafka-transit code - decrypt every rewrapped record and are refused every old one.
# envelope-rewrap must leave each envelope's nonce, ciphertext and tag byte-identical.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=500
WORK=$(mktemp -d -t kafka-transit-rotation.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics customers.raw:3 values.v1:3 values.v2:3 sealed.v1:3 sealed.v2:3 \
  customers.raw.dlq values.v1.dlq sealed.v1.dlq
vault_write transit/keys/customers '{}'

say "producing $N records"
python3 - "$KAFKA_BOOTSTRAP" "$N" >"$WORK/records.tsv" <<'PY'
import json, sys
from confluent_kafka import Producer
bootstrap, count = sys.argv[1], int(sys.argv[2])
producer = Producer({"bootstrap.servers": bootstrap})
for i in range(count):
    key, value = f"customer-{i:04d}", json.dumps({"id": i, "name": f"PLAINTEXT-{i}"})
    producer.produce("customers.raw", key=key, value=value)
    print(f"{key}\t{value}")
producer.flush(60)
PY

write_pipeline "$WORK/encrypt.toml" customers.raw values.v1 encrypt-value customers
write_pipeline "$WORK/seal.toml" customers.raw sealed.v1 envelope-seal customers
write_pipeline "$WORK/rewrap.toml" values.v1 values.v2 rewrap-value customers
write_pipeline "$WORK/envelope-rewrap.toml" sealed.v1 sealed.v2 envelope-rewrap customers

say "version 1: encrypt-value and envelope-seal"
run_until "$WORK/encrypt.toml" values.v1 "$N" "$WORK/encrypt.log"
run_until "$WORK/seal.toml" sealed.v1 "$N" "$WORK/seal.log"

say "rotate: vault write -f transit/keys/customers/rotate"
vault_write transit/keys/customers/rotate '{}'

say "rewrap-value and envelope-rewrap into new topics"
run_until "$WORK/rewrap.toml" values.v2 "$N" "$WORK/rewrap.log"
run_until "$WORK/envelope-rewrap.toml" sealed.v2 "$N" "$WORK/envelope-rewrap.log"
for topic in values.v1.dlq sealed.v1.dlq; do
  [ "$(count_distinct_keys "$topic")" -eq 0 ] || fail "records were dead-lettered to $topic"
done

say "min_decryption_version = 2: version 1 is no longer decrypted by Vault"
vault_write transit/keys/customers/config '{"min_decryption_version": 2}'

say "independent clients: rewrapped records decrypt, the old ones are refused"
python3 - "$KAFKA_BOOTSTRAP" "$N" "$WORK/records.tsv" <<'PY'
import base64, os, sys
import hvac
sys.path.insert(0, "demos/python")
from envelope_decrypt import Unwrapper, parse, read_topic

bootstrap, count, originals = sys.argv[1], int(sys.argv[2]), sys.argv[3]
expected = dict(line.rstrip("\n").split("\t", 1) for line in open(originals, encoding="utf-8"))
client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])

def by_key(topic):
    messages = read_topic(bootstrap, topic, count)
    assert len(messages) == count, f"{topic}: {len(messages)} of {count} records"
    return {m.key().decode(): m.value() for m in messages}

def decrypt(ciphertext):
    response = client.secrets.transit.decrypt_data(name="customers", ciphertext=ciphertext)
    return base64.b64decode(response["data"]["plaintext"]).decode()

def refused(attempt):
    try:
        attempt()
    except hvac.exceptions.InvalidRequest as error:
        assert "too old" in str(error) or "disallowed" in str(error), error
        return True
    return False

old, new = by_key("values.v1"), by_key("values.v2")
for key, plaintext in expected.items():
    assert old[key].startswith(b"vault:v1:") and new[key].startswith(b"vault:v2:"), key
    assert decrypt(new[key].decode()) == plaintext, f"{key}: rewrapped value differs"
    assert refused(lambda: decrypt(old[key].decode())), f"{key}: the v1 value still decrypts"
print(f"  values: {count} rewrapped to v2 decrypt with hvac; {count} v1 values refused")

old, new = by_key("sealed.v1"), by_key("sealed.v2")
unwrapper = Unwrapper(client, "transit")
wrapped_keys = set()
for key, plaintext in expected.items():
    _, old_wrapped, _, old_nonce, old_sealed = parse(old[key])
    _, new_wrapped, _, new_nonce, new_sealed = parse(new[key])
    assert old_wrapped.startswith("vault:v1:") and new_wrapped.startswith("vault:v2:"), key
    assert (old_nonce, old_sealed) == (new_nonce, new_sealed), f"{key}: ciphertext changed"
    assert unwrapper.open(new[key]).decode() == plaintext, f"{key}: rewrapped envelope differs"
    assert refused(lambda: unwrapper.open(old[key])), f"{key}: the v1 envelope still opens"
    wrapped_keys.add(new_wrapped)
print(f"  envelopes: {count} rewrapped envelopes open with the reference decryptor "
      f"({len(wrapped_keys)} data key(s), nonce/ciphertext/tag untouched); {count} v1 envelopes refused")
PY
say "rotation end-to-end: passed"

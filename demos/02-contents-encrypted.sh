#!/usr/bin/env bash
# Demo 2: with kafka-transit, the Kafka administrator sees only Vault ciphertexts, and
# an authorised consumer gets the records back exactly.
#
#   producer.py ──▶ raw ──▶ kafka-transit encrypt-value  ──▶ protected ──▶ kafka-transit decrypt-value ──▶ cleartext
#                       └─▶ kafka-transit encrypt-fields ──▶ fields            └─▶ consumer.py (hvac, transit/decrypt)
#
# Checks: no SSN or card number appears on the protected topics; every protected value
# is `vault:v...`; the decrypt pipeline's output is byte-identical to the originals; the
# Python consumer (hvac only, no kafka-transit code) decrypts both topics to the originals.
set -euo pipefail
DEMOS="$(cd "$(dirname "$0")" && pwd)"
source "$DEMOS/lib/stack.sh"

N=20
WORK=$(mktemp -d -t kafka-transit-demo02.XXXXXX)
printf '\n\033[1;34m=== Demo 2: records encrypted with Vault transit before they reach Kafka ===\033[0m\n'
demo_stack
T="demo02.customers"
RAW="$T.raw$DEMO_TOPIC_SUFFIX" PROTECTED="$T.protected$DEMO_TOPIC_SUFFIX"
FIELDS="$T.fields$DEMO_TOPIC_SUFFIX" CLEARTEXT="$T.cleartext$DEMO_TOPIC_SUFFIX"
create_topics "$RAW" "$PROTECTED" "$FIELDS" "$CLEARTEXT" "$RAW.dlq" "$PROTECTED.dlq"
# The transit key: created once by whoever runs Vault; the application never sees it.
vault_write transit/keys/customers '{}' || fail "could not create the transit key 'customers' at $VAULT_ADDR (VAULT_TOKEN?)"

step "the application writes $N customer records to $RAW (unchanged: no cryptography)"
python3 "$DEMOS/python/producer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$RAW" \
  --count "$N" --out "$WORK/originals.tsv"

# Two pipelines from the same raw topic: whole values, and only the personal fields.
write_pipeline "$WORK/encrypt-value.toml" "$RAW" "$PROTECTED" encrypt-value customers
write_pipeline "$WORK/encrypt-fields.toml" "$RAW" "$FIELDS" encrypt-fields customers
# write_pipeline has no parameter for policy.config entries: add the field list after `key`.
sed -i '/^key = "customers"$/a fields = ["/ssn", "/card/number", "/iban"]' "$WORK/encrypt-fields.toml"
write_pipeline "$WORK/decrypt-value.toml" "$PROTECTED" "$CLEARTEXT" decrypt-value customers
for config in encrypt-value encrypt-fields decrypt-value; do
  "$KAFKA_TRANSIT" validate --config "$WORK/$config.toml" >/dev/null
done

step "kafka-transit run: encrypt-value $RAW -> $PROTECTED"
run_pipeline_until "$WORK/encrypt-value.toml" "$PROTECTED" "$N" "$WORK/encrypt-value.log"

step "kafka-transit run: encrypt-fields (/ssn, /card/number, /iban) $RAW -> $FIELDS"
run_pipeline_until "$WORK/encrypt-fields.toml" "$FIELDS" "$N" "$WORK/encrypt-fields.log"

step "what the Kafka administrator sees on $PROTECTED (kcat)"
admin_view "$PROTECTED" >"$WORK/protected.tsv"
show_records 3 <"$WORK/protected.tsv"
step "what the Kafka administrator sees on $FIELDS (kcat)"
admin_view "$FIELDS" >"$WORK/fields.tsv"
# (ciphertexts shortened to their first characters so the record's structure shows)
sed -E 's#(vault:v[0-9]+:[A-Za-z0-9+/]{8})[A-Za-z0-9+/=]*#\1…#g' "$WORK/fields.tsv" | show_records 3 200

# Everything that must not leak, one fixed string per line, for grep -F.
python3 - "$WORK/originals.tsv" >"$WORK/secrets.txt" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    record = json.loads(line.split("\t", 1)[1])
    print(record["ssn"]); print(record["card"]["number"]); print(record["iban"])
PY
for file in protected fields; do
  if grep -qFf "$WORK/secrets.txt" "$WORK/$file.tsv"; then
    fail "an SSN, card number or IBAN is readable on the $file topic: $(grep -oFf "$WORK/secrets.txt" "$WORK/$file.tsv" | head -1)"
  fi
done
check "no SSN, card number or IBAN on $PROTECTED or $FIELDS ($(wc -l <"$WORK/secrets.txt") strings searched)"
if cut -f2- "$WORK/protected.tsv" | grep -v '^vault:v[0-9]*:' | grep -q .; then
  fail "a value on $PROTECTED is not a Vault ciphertext"
fi
check "every value on $PROTECTED is a Vault ciphertext (vault:v...)"
grep -q '"name":"Ada Lovelace"' "$WORK/fields.tsv" || fail "names should stay readable on $FIELDS"
check "on $FIELDS names and e-mails stay readable for routing and analytics"

step "authorised consumer 1: kafka-transit run decrypt-value $PROTECTED -> $CLEARTEXT"
run_pipeline_until "$WORK/decrypt-value.toml" "$CLEARTEXT" "$N" "$WORK/decrypt-value.log"
admin_view "$CLEARTEXT" >"$WORK/cleartext.tsv"
show_records 2 <"$WORK/cleartext.tsv"
# Same keys, same values, byte for byte (order across keys does not matter).
cmp -s <(sort "$WORK/originals.tsv") <(sort "$WORK/cleartext.tsv") \
  || fail "$CLEARTEXT differs from the originals: $(diff <(sort "$WORK/originals.tsv") <(sort "$WORK/cleartext.tsv") | head -4)"
check "$CLEARTEXT is byte-identical to what the application wrote"

step "authorised consumer 2: demos/python/consumer.py (hvac -> Vault transit/decrypt; no kafka-transit code)"
python3 "$DEMOS/python/consumer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$PROTECTED" \
  --count "$N" --expect "$WORK/originals.tsv" --show 2
python3 "$DEMOS/python/consumer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$FIELDS" \
  --count "$N" --fields --expect "$WORK/originals.tsv" --show 2
check "the Python consumer got every record back from both topics"
echo "demo 02: passed"

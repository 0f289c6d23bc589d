#!/usr/bin/env bash
# Demo 2: with kafka-transit, the Kafka administrator sees only Vault ciphertexts (in
# values, record keys and headers), an authorised consumer gets the records back exactly,
# and a ciphertext the administrator moves to another record is refused.
#
#   producer.py ──▶ raw ──▶ kafka-transit encrypt-value  ──▶ protected ──▶ kafka-transit decrypt-value ──▶ cleartext
#                       └─▶ kafka-transit encrypt-fields ──▶ fields            └─▶ consumer.py (Python, Vault transit)
#
# The records are keyed by the customer's e-mail and carry the headers traceparent,
# user-id and tenant. encrypt-value protects all of it: record_keys = "encrypt" (Vault
# convergent encryption: one customer, one sink key), headers = "seal" (but traceparent),
# bind = ["stream", "key"] (each ciphertext authenticates its topic and key).
# encrypt-fields protects only ssn, card number and IBAN: names, e-mails (the key) and
# headers stay readable there, for routing and analytics.
#
# Checks: no SSN, card number or IBAN on either protected topic; on the protected topic
# no e-mail, user id or tenant anywhere (keys, headers, values), every key and value a
# Vault ciphertext; a value moved under another record's key is dead-lettered
# ("message authentication failed"); the decrypt pipeline's output is byte-identical to
# the originals (key, value, headers); the Python consumer reads both topics back to the
# originals and refuses the moved value as well.
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
# The transit keys: created once by whoever runs Vault; the application never sees them.
# Record keys need a convergent key (the same e-mail gives the same sink key).
vault_write transit/keys/customers '{}' || fail "could not create the transit key 'customers' at $VAULT_ADDR (VAULT_TOKEN?)"
vault_write transit/keys/customer-keys '{"derived": true, "convergent_encryption": true}' \
  || fail "could not create the convergent transit key 'customer-keys' at $VAULT_ADDR"

step "the application writes $N customer records to $RAW (unchanged: no cryptography)"
python3 "$DEMOS/python/producer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$RAW" \
  --count "$N" --keys-and-headers --out "$WORK/originals.tsv"

# Two pipelines from the same raw topic: whole records, and only the personal fields.
# write_pipeline has no parameter for policy.config entries: they go after `key`.
add_policy_config() { # FILE LINE...
  local file=$1 line
  shift
  for line in "$@"; do sed -i "/^\[errors\]\$/i $line" "$file"; done
}
write_pipeline "$WORK/encrypt-value.toml" "$RAW" "$PROTECTED" encrypt-value customers
add_policy_config "$WORK/encrypt-value.toml" 'record_keys = "encrypt"' 'record_keys_key = "customer-keys"' \
  'headers = "seal"' 'keep_headers = ["traceparent"]' 'bind = ["stream", "key"]'
write_pipeline "$WORK/encrypt-fields.toml" "$RAW" "$FIELDS" encrypt-fields customers
add_policy_config "$WORK/encrypt-fields.toml" 'fields = ["/ssn", "/card/number", "/iban"]'
write_pipeline "$WORK/decrypt-value.toml" "$PROTECTED" "$CLEARTEXT" decrypt-value customers
add_policy_config "$WORK/decrypt-value.toml" 'record_keys_key = "customer-keys"' 'require_binding = ["stream", "key"]'
for config in encrypt-value encrypt-fields decrypt-value; do
  "$KAFKA_TRANSIT" validate --config "$WORK/$config.toml" >/dev/null
done

step "kafka-transit run: encrypt-value $RAW -> $PROTECTED"
echo '   record_keys = "encrypt", headers = "seal", keep_headers = ["traceparent"], bind = ["stream", "key"]'
run_pipeline_until "$WORK/encrypt-value.toml" "$PROTECTED" "$N" "$WORK/encrypt-value.log"

step "kafka-transit run: encrypt-fields (/ssn, /card/number, /iban) $RAW -> $FIELDS"
run_pipeline_until "$WORK/encrypt-fields.toml" "$FIELDS" "$N" "$WORK/encrypt-fields.log"

# kcat as an operator reads: key | headers | value (Vault ciphertexts shortened to their
# first characters so the record's structure shows).
admin_records() { kcat -b "$KAFKA_BOOTSTRAP" -X log_level=3 -X isolation.level=read_committed -C -t "$1" -o beginning -e -q -f '%k\t%h\t%s\n'; }
shorten() { sed -E 's#(vault:v[0-9]+:[A-Za-z0-9+/]{8})[A-Za-z0-9+/=]*#\1…#g; s#(traceparent=00-[0-9a-f]{8})[0-9a-f-]*#\1…#g'; }
show_admin() { # FILE [N]: key | headers | value per record
  shorten <"$1" | awk -F '\t' -v n="${2:-1}" '
    NR <= n { v = $3; if (length(v) > 130) v = substr(v, 1, 130) "…"; printf "   %s | %s | %s\n", $1, $2, v }
    END { if (NR > n) printf "   … and %d more\n", NR - n }'
}
step "what the Kafka administrator sees on $RAW, before kafka-transit (kcat: key | headers | value)"
admin_records "$RAW" >"$WORK/raw.tsv"
show_admin "$WORK/raw.tsv"
step "what the Kafka administrator sees on $PROTECTED (kcat)"
admin_records "$PROTECTED" >"$WORK/protected.tsv"
show_admin "$WORK/protected.tsv" 2
step "what the Kafka administrator sees on $FIELDS (kcat)"
admin_records "$FIELDS" >"$WORK/fields.tsv"
show_admin "$WORK/fields.tsv" 2

# Everything that must not leak, one fixed string per line, for grep -F: SSNs, card
# numbers and IBANs everywhere; on the whole-record topic e-mails, user ids and tenants too.
python3 - "$WORK/originals.tsv" "$WORK/secrets.txt" "$WORK/identities.txt" <<'PY'
import json, sys
with open(sys.argv[2], "w") as secrets, open(sys.argv[3], "w") as identities:
    for line in open(sys.argv[1], encoding="utf-8"):
        key, value, headers = line.rstrip("\n").split("\t")
        record = json.loads(value)
        for secret in (record["ssn"], record["card"]["number"], record["iban"]):
            print(secret, file=secrets)
        print(key, file=identities)
        for name, header in json.loads(headers):
            if name in ("user-id", "tenant"):
                print(header, file=identities)
PY
for file in protected fields; do
  if grep -qFf "$WORK/secrets.txt" "$WORK/$file.tsv"; then
    fail "an SSN, card number or IBAN is readable on the $file topic: $(grep -oFf "$WORK/secrets.txt" "$WORK/$file.tsv" | head -1)"
  fi
done
check "no SSN, card number or IBAN on $PROTECTED or $FIELDS ($(wc -l <"$WORK/secrets.txt") strings searched)"
if grep -qFf "$WORK/identities.txt" "$WORK/protected.tsv"; then
  fail "an e-mail, user id or tenant is readable on $PROTECTED: $(grep -oFf "$WORK/identities.txt" "$WORK/protected.tsv" | head -1)"
fi
check "no e-mail, user id or tenant in any key, header or value on $PROTECTED ($(sort -u "$WORK/identities.txt" | wc -l) strings searched)"
if cut -f1,3 "$WORK/protected.tsv" | tr '\t' '\n' | grep -v '^vault:v[0-9]*:' | grep -q .; then
  fail "a key or value on $PROTECTED is not a Vault ciphertext"
fi
check "every key and value on $PROTECTED is a Vault ciphertext (vault:v...); only traceparent and kafka-transit.* headers left"
[ "$(cut -f1 "$WORK/protected.tsv" | sort -u | wc -l)" -eq "$N" ] \
  || fail "$N customers should have $N distinct keys on $PROTECTED (convergent encryption)"
grep -q '"name":"Ada Lovelace"' "$WORK/fields.tsv" || fail "names should stay readable on $FIELDS"
check "on $FIELDS names, e-mails and headers stay readable for routing and analytics"

step "the administrator moves a ciphertext: one record's value under another record's key"
python3 "$REPO_ROOT/demos/lib/moved_ciphertext.py" move "$KAFKA_BOOTSTRAP" "$PROTECTED" "$WORK/forged.json"

step "authorised consumer 1: kafka-transit run decrypt-value $PROTECTED -> $CLEARTEXT"
run_pipeline_until "$WORK/decrypt-value.toml" "$CLEARTEXT" "$N" "$WORK/decrypt-value.log" "$PROTECTED.dlq" 1
python3 "$REPO_ROOT/demos/lib/moved_ciphertext.py" check "$KAFKA_BOOTSTRAP" "$PROTECTED.dlq" "$WORK/forged.json" \
  || fail "the moved ciphertext was not refused as it should be (log: $WORK/decrypt-value.log)"
check "the moved ciphertext is dead-lettered, not opened: it authenticates its own key only"
read_records "$CLEARTEXT" --headers >"$WORK/cleartext.tsv"
admin_records "$CLEARTEXT" >"$WORK/cleartext-kcat.tsv"
show_admin "$WORK/cleartext-kcat.tsv" 2
# Same keys, values and headers (in order), byte for byte (order across keys does not matter).
cmp -s <(sort "$WORK/originals.tsv") <(sort "$WORK/cleartext.tsv") \
  || fail "$CLEARTEXT differs from the originals: $(diff <(sort "$WORK/originals.tsv") <(sort "$WORK/cleartext.tsv") | head -4)"
check "$CLEARTEXT is byte-identical to what the application wrote: keys, values and headers"

step "authorised consumer 2: demos/python/consumer.py (Vault transit from Python; no kafka-transit code)"
python3 "$DEMOS/python/consumer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$PROTECTED" \
  --count "$((N + 1))" --record-keys-key customer-keys --expect "$WORK/originals.tsv" \
  --expect-refused 1 --show 1 --width 90
python3 "$DEMOS/python/consumer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$FIELDS" \
  --count "$N" --fields --expect "$WORK/originals.tsv" --show 1 --width 90
check "the Python consumer got every record back from both topics, and refused the moved one"
echo "demo 02: passed"

#!/usr/bin/env bash
# The on-premises -> SaaS shape, end to end: the source is one Apache Kafka cluster
# (plaintext, inside), the sink another reached over SASL_SSL with SCRAM-SHA-512 and a
# throwaway CA (as Confluent Cloud or MSK are), and Vault is OpenBao over TLS with
# AppRole login. Secrets reach the runner only through { env = ... } and files.
#
# Checks: every record arrives on the sink cluster as a Vault ciphertext and decrypts to
# the original; nothing reaches the sink cluster in plaintext; the runner's logs hold no
# secret; the runner stops cleanly.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=2000
WORK=$(mktemp -d -t kafka-transit-two-clusters.XXXXXX)
stack_init
start_kafka
start_kafka SINK_BOOTSTRAP --sasl-ssl
start_openbao --tls

# An operator's view of the sink cluster (`sink CMD`): the cluster's client properties.
SINK_SASL_PASSWORD=$(cat "$SINK_KAFKA_DIR/sasl-password")
export SINK_SASL_PASSWORD
(umask 077 && { cat "$SINK_KAFKA_DIR/client.properties"; echo "sasl.password=$SINK_SASL_PASSWORD"; } >"$WORK/sink-admin.properties")
SINK_KCAT_CONFIG=$WORK/sink-admin.properties

create_topics orders.raw:3 orders.raw.dlq
sink create_topics orders.protected:3
vault_write transit/keys/orders '{}'

say "AppRole for the runner: a role allowed to encrypt with the orders key only"
vault_write sys/policies/acl/kafka-transit-orders \
  '{"policy": "path \"transit/encrypt/orders\" { capabilities = [\"update\"] }\npath \"auth/token/lookup-self\" { capabilities = [\"read\"] }\npath \"auth/token/renew-self\" { capabilities = [\"update\"] }"}'
vault_write auth/approle/role/kafka-transit '{"token_policies": ["kafka-transit-orders"], "token_ttl": "10m", "token_max_ttl": "30m"}'
vault_read() { curl -sf --cacert "$VAULT_CACERT" -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/$1"; }
vault_read auth/approle/role/kafka-transit/role-id | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["role_id"])' >"$WORK/role-id"
APPROLE_SECRET_ID=$(curl -sf --cacert "$VAULT_CACERT" -X POST -H "X-Vault-Token: $VAULT_TOKEN" \
  "$VAULT_ADDR/v1/auth/approle/role/kafka-transit/secret-id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["secret_id"])')
export APPROLE_SECRET_ID

say "the application produces $N orders on the source cluster"
python3 - "$KAFKA_BOOTSTRAP" "$N" "$WORK/orders.tsv" <<'PY'
import json, sys
from confluent_kafka import Producer
bootstrap, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
with open(path, "w", encoding="utf-8") as out:
    for i in range(n):
        value = json.dumps({"order": i, "customer": f"PLAINTEXT-CUSTOMER-{i:05d}", "amount": i * 7})
        out.write(f"order-{i:05d}\t{value}\n")
        producer.produce("orders.raw", key=f"order-{i:05d}", value=value)
assert producer.flush(60) == 0
PY

# The sink's connection settings, the password from an environment variable.
client_properties=$(sed -n 's/^\([a-z.]*\)=\(.*\)$/"\1" = "\2"/p' "$SINK_KAFKA_DIR/client.properties")
cat >"$WORK/pipeline.toml" <<TOML
[source]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topics = ["orders.raw"]
group_id = "kafka-transit-orders"

[sink]
bootstrap_servers = "$SINK_BOOTSTRAP"
topic = "orders.protected"
[sink.properties]
$client_properties
"sasl.password" = { env = "SINK_SASL_PASSWORD" }

[vault]
address = "$VAULT_ADDR"
ca_cert = "$VAULT_CACERT"
[vault.approle]
role_id_file = "$WORK/role-id"
secret_id_env = "APPROLE_SECRET_ID"

[policy]
builtin = "encrypt-value"
[policy.config]
key = "orders"

[errors]
on_failure = "dead-letter"
dead_letter_topic = "orders.raw.dlq"

[pipeline]
progress_interval = "2s"
TOML
"$KAFKA_TRANSIT" validate --config "$WORK/pipeline.toml"

say "encrypt pipeline: source cluster -> SASL_SSL sink cluster"
"$KAFKA_TRANSIT" run --config "$WORK/pipeline.toml" >"$WORK/runner.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
sink wait_for_keys orders.protected "$N" 180
kill -TERM "$runner"
wait "$runner" || fail "the runner did not exit 0 on SIGTERM (log: $WORK/runner.log)"
grep -q "stopped cleanly" "$WORK/runner.log" || fail "no clean-stop line in $WORK/runner.log"

say "checking orders.protected on the sink cluster with kcat over SASL_SSL"
sink admin_kcat -C -t orders.protected -o beginning -e -q -f '%k\t%s\n' 2>/dev/null >"$WORK/protected.tsv"
if grep -q 'PLAINTEXT-CUSTOMER' "$WORK/protected.tsv"; then fail "plaintext reached the sink cluster"; fi
if cut -f2 "$WORK/protected.tsv" | grep -v '^vault:v[0-9]*:' | grep -q .; then
  fail "a value on orders.protected is not a Vault ciphertext"
fi
[ "$(count_distinct_keys orders.raw.dlq)" -eq 0 ] || fail "records were dead-lettered"

say "decrypting with hvac (TLS, root token) to compare with the originals"
decrypt_check orders "$WORK/orders.tsv" "$WORK/protected.tsv" || fail "see above (sink records: $WORK/protected.tsv)"

for secret in "$SINK_SASL_PASSWORD" "$APPROLE_SECRET_ID" "$VAULT_TOKEN"; do
  if grep -qF -- "$secret" "$WORK/runner.log"; then fail "a secret appears in the runner's log"; fi
done
say "two clusters, SASL_SSL sink, OpenBao over TLS with AppRole: passed"

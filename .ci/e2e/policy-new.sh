#!/usr/bin/env bash
# A policy written outside the repository, the way a new author writes one. `kafka-transit
# policy new` scaffolds a crate in a temporary directory outside the checkout, with only
# the binary: the SDK it was built with comes vendored in the crate (vendor/), so nothing
# refers to the checkout and it builds offline from crates.io's cache. The crate passes its own native tests, builds with plain cargo and
# with cargo component, and `kafka-transit validate` accepts both components (and
# refuses a core module, saying how to build a component). It then runs in a pipeline
# between Apache Kafka topics with OpenBao holding the key: every output key must be
# OpenBao's own HMAC of the input key, with values unchanged and nothing dead-lettered.
#
# CARGO_COMPONENT names the cargo-component binary (default: the cached 0.21.1).
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

KEYS=100   # distinct record keys, each produced three times
KEYLESS=3  # records without a key: they pass through
TOTAL=$((KEYS * 3 + KEYLESS))
STARTED=$SECONDS

CARGO_COMPONENT=${CARGO_COMPONENT:-$KT_CACHE/cargo-component-0.21.1/bin/cargo-component}
[ -x "$CARGO_COMPONENT" ] \
  || fail "cargo-component is not at $CARGO_COMPONENT: set CARGO_COMPONENT, or cargo install cargo-component --locked --version 0.21.1"
WORK=$(mktemp -d -t kafka-transit-policy-new.XXXXXX)
case "$WORK/" in
  "$REPO_ROOT"/*) fail "$WORK is inside the checkout; the point is a crate outside it" ;;
esac

stack_init
# The author's crate builds in its own target/, as on the author's machine.
unset CARGO_TARGET_DIR

say "kafka-transit policy new hash-keys (in $WORK, outside the checkout)"
cd "$WORK"
"$KAFKA_TRANSIT" policy new hash-keys
cd hash-keys
if grep -rqF "$REPO_ROOT" .; then fail "the crate refers to the checkout ($REPO_ROOT)"; fi
[ -f vendor/guest/sdk/Cargo.toml ] || fail "no vendored SDK in vendor/guest/sdk"
"$KAFKA_TRANSIT" policy wit | cmp -s - wit/policy.wit \
  || fail "wit/policy.wit is not what kafka-transit policy wit prints"

say "cargo test: the crate's own tests, natively, against the SDK's stand-in host"
cargo test --offline 2>&1 | tee "$WORK/test.log"
grep -Eq "^test result: ok\. [1-9][0-9]* passed; 0 failed" "$WORK/test.log" \
  || fail "the crate's tests did not pass"

say "plain cargo: cargo build --release --target wasm32-wasip2"
cargo build --offline --release --target wasm32-wasip2 2>&1 | tee "$WORK/build.log"
if grep -q "^warning" "$WORK/build.log"; then fail "the example builds with warnings"; fi
[ -f target/wasm32-wasip2/release/hash_keys.wasm ] || fail "no target/wasm32-wasip2/release/hash_keys.wasm"

# validate reads the token variable (as run would) but contacts neither Vault nor Kafka.
export VAULT_TOKEN=token-that-validate-reads-but-never-sends
component_config() { # WASM: pipeline.toml with policy.path set to WASM, in the crate (paths are relative to it)
  sed "s|^path = .*|path = \"$1\"|" pipeline.toml >"check.toml"
  echo check.toml
}

say "a plain wasm32-wasip1 build is a core module: validate refuses it and says what to build"
cargo build --offline --release --target wasm32-wasip1
if "$KAFKA_TRANSIT" validate --config "$(component_config target/wasm32-wasip1/release/hash_keys.wasm)" \
  2>"$WORK/core.err"; then
  fail "validate accepted a core module"
fi
cat "$WORK/core.err"
grep -q "core WebAssembly module, not a component" "$WORK/core.err" || fail "the refusal does not say why"
grep -q "cargo component build" "$WORK/core.err" || fail "the refusal does not say what to build"

say "cargo component build --release (the same wasm32-wasip1 build, made a component)"
PATH="$(dirname "$CARGO_COMPONENT"):$PATH" cargo component build --release --offline
"$KAFKA_TRANSIT" validate --config "$(component_config target/wasm32-wasip1/release/hash_keys.wasm)"

say "validate: the plain-cargo component, and a configuration error named by the author's own check"
"$KAFKA_TRANSIT" validate --config pipeline.toml
sed -i 's/^key = "customers"/kee = "customers"/' check.toml
if "$KAFKA_TRANSIT" validate --config check.toml 2>"$WORK/config.err"; then
  fail "a policy config with an unknown field was accepted"
fi
grep -q "unknown field \`kee\`" "$WORK/config.err" || fail "the error does not name the field: $(cat "$WORK/config.err")"
rm check.toml

say "the generated pipeline.toml, pointed at Apache Kafka and OpenBao"
start_kafka
start_openbao
create_topics customers.raw:3 customers.pseudonymised:3 customers.raw.dlq
vault_write transit/keys/customers '{}'
sed -i -e "s|\"127.0.0.1:9092\"|\"$KAFKA_BOOTSTRAP\"|" \
  -e "s|\"http://127.0.0.1:8200\"|\"$VAULT_ADDR\"|" pipeline.toml
printf '\n[pipeline]\nprogress_interval = "2s"\n' >>pipeline.toml
"$KAFKA_TRANSIT" validate --config pipeline.toml

say "producing $TOTAL records: $KEYS e-mail addresses as keys, three records each, and $KEYLESS without a key"
python3 - "$KAFKA_BOOTSTRAP" "$KEYS" "$KEYLESS" <<'PY'
import json, sys
from confluent_kafka import Producer
bootstrap, keys, keyless = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
producer = Producer({"bootstrap.servers": bootstrap})
for round_ in range(3):
    for i in range(keys):
        email = f"customer-{i:03d}@example.com"
        producer.produce("customers.raw", key=email, value=json.dumps({"email": email, "order": round_}))
for i in range(keyless):
    producer.produce("customers.raw", value=json.dumps({"keyless": i}))
assert producer.flush(60) == 0, "records left unsent"
PY

count_records() { admin_kcat -C -t "$1" -o beginning -e -q -f '.\n' 2>/dev/null | grep -c . || true; }
say "kafka-transit run, with the author's policy"
"$KAFKA_TRANSIT" --log-format json run --config pipeline.toml >"$WORK/run.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
deadline=$((SECONDS + 180))
until [ "$(count_records customers.pseudonymised)" -ge "$TOTAL" ]; do
  kill -0 "$runner" 2>/dev/null || fail "kafka-transit exited early (log: $WORK/run.log)"
  [ "$SECONDS" -lt "$deadline" ] || fail "customers.pseudonymised has $(count_records customers.pseudonymised) of $TOTAL records after 180s (log: $WORK/run.log)"
  sleep 1
done
kill -TERM "$runner"
wait "$runner" || fail "kafka-transit did not stop cleanly (log: $WORK/run.log)"
[ "$(count_records customers.raw.dlq)" -eq 0 ] || fail "records were dead-lettered (log: $WORK/run.log)"

say "every key on customers.pseudonymised is OpenBao's HMAC of the original; values unchanged"
python3 - "$REPO_ROOT" "$KAFKA_BOOTSTRAP" "$TOTAL" "$KEYS" <<'PY'
import base64, json, os, sys, urllib.request
sys.path.insert(0, os.path.join(sys.argv[1], "demos/python"))
from envelope_decrypt import read_topic

bootstrap, total, keys = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
records = read_topic(bootstrap, "customers.pseudonymised", total + 1, timeout=15)
assert len(records) == total, f"{len(records)} records on the sink, expected {total}"

emails = sorted({json.loads(r.value())["email"] for r in records if r.key() is not None})
request = urllib.request.Request(
    f"{os.environ['VAULT_ADDR']}/v1/transit/hmac/customers",
    data=json.dumps({"batch_input": [{"input": base64.b64encode(e.encode()).decode()} for e in emails]}).encode(),
    headers={"X-Vault-Token": os.environ["VAULT_TOKEN"]},
)
hmacs = [r["hmac"] for r in json.load(urllib.request.urlopen(request))["data"]["batch_results"]]
expected = dict(zip(emails, hmacs))

pseudonyms, keyless = set(), 0
for record in records:
    value = json.loads(record.value())
    headers = dict(record.headers() or [])
    if record.key() is None:
        assert "keyless" in value, value
        keyless += 1
        continue
    key = record.key().decode()
    assert key == expected[value["email"]], f"{value['email']}: {key} is not OpenBao's HMAC"
    assert "@" not in key, key
    assert headers.get("kafka-transit.policy") == b"hash-keys", headers
    assert headers.get("kafka-transit.key") == b"customers", headers
    pseudonyms.add(key)
assert len(pseudonyms) == keys, f"{len(pseudonyms)} distinct pseudonyms for {keys} keys"
assert keyless == total - 3 * keys, keyless
print(f"   {total} records: {keys} keys -> {len(pseudonyms)} pseudonyms, each OpenBao's HMAC; "
      f"{keyless} keyless passed through; e.g. {emails[0]} -> {expected[emails[0]]}")
PY

say "a policy written outside the repository: scaffolded, tested, built two ways, validated and run in $((SECONDS - STARTED))s"
# Its build output is some 450 MB; a failed run keeps it, with the logs, for a look.
cd "$REPO_ROOT"
rm -rf "$WORK"

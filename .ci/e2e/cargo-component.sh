#!/usr/bin/env bash
# The component `cargo component build` made (wasm32-wasip1 + adapter) is accepted by
# the host exactly like the wasm32-wasip2 one: `validate` loads, type-checks and
# initialises it, and a bad config is refused naming the field.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"
build_kafka_transit
# validate reads the token variable (as run would) but never contacts Vault.
export VAULT_TOKEN=token-that-validate-reads-but-never-sends
component="${CARGO_TARGET_DIR:-$REPO_ROOT/guest/target}/wasm32-wasip1/release/encrypt_value.wasm"
[ -f "$component" ] || fail "$component is missing: run cargo component build --release in guest/encrypt-value"
WORK=$(mktemp -d)
KAFKA_BOOTSTRAP=127.0.0.1:9 VAULT_ADDR=http://127.0.0.1:8200 \
  write_pipeline "$WORK/p.toml" in out encrypt-value customers
sed -i "s|^builtin = \"encrypt-value\"|path = \"$component\"|" "$WORK/p.toml"
"$KAFKA_TRANSIT" validate --config "$WORK/p.toml"
sed -i 's/^key = "customers"/kee = "customers"/' "$WORK/p.toml"
if "$KAFKA_TRANSIT" validate --config "$WORK/p.toml" 2>"$WORK/err"; then
  fail "a policy config with an unknown field was accepted"
fi
grep -q "unknown field \`kee\`" "$WORK/err" || fail "the error does not name the field: $(cat "$WORK/err")"
say "cargo-component build accepted by the host"

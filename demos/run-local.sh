#!/usr/bin/env bash
# One command for every demonstration on this machine, no Docker: starts Apache Kafka
# (single-node KRaft) and OpenBao (demos/lib/stack.sh), runs demos/0*.sh against them one after another,
# and stops both on exit, failure included (stack.sh's EXIT trap).
#
#   bash demos/run-local.sh        # exit status: 0 only if every demo passed
set -euo pipefail
DEMOS="$(cd "$(dirname "$0")" && pwd)"
source "$DEMOS/lib/stack.sh"

stack_init   # exports KAFKA_TRANSIT: the demos reuse the binary instead of rebuilding
# Always a stack of our own, even if the caller's environment names another one.
unset KAFKA_BOOTSTRAP VAULT_ADDR VAULT_TOKEN
start_kafka
start_openbao
# A fresh broker: the demos' plain topic names are free (see demo_stack).
export DEMO_TOPIC_SUFFIX=""

passed=0 failed=0 failures=()
for demo in "$DEMOS"/0*.sh; do
  # Each demo runs in its own shell, so one that fails does not stop the others.
  if bash "$demo"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$(basename "$demo")")
  fi
done

printf '\n'
[ "$failed" -eq 0 ] || printf 'failed: %s\n' "${failures[*]}"
echo "demos: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

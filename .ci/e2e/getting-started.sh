#!/usr/bin/env bash
# docs/getting-started.md, run as written: every ```sh block of the guide, in order, in
# one bash process (so the runner it starts in the background is the one it stops with
# `kill` and `wait`), against Apache Kafka and a fresh OpenBao, with the kafka-transit
# binary on PATH. A failing command fails the suite naming its block. Then the checks
# the guide only shows: customers.protected holds the three records as Vault ciphertexts
# and nothing of what was produced, nothing was dead-lettered, the example consumer
# printed the three originals and found them equal, and the runner stopped cleanly.
#
# What stands in for the reader's machine, and why:
# - `vault` is OpenBao's `bao` (the same commands, and it reads VAULT_ADDR and
#   VAULT_TOKEN) unless a `vault` binary is on PATH;
# - `kafka-topics.sh`: Kafka's jars installed by .ci/kafka/kafka.sh are the broker's and
#   do not include kafka-tools (org.apache.kafka.tools.TopicCommand), so unless a
#   kafka-topics.sh is on PATH, the guide's `kafka-topics.sh --bootstrap-server B --create
#   --topic T --partitions N` lines are run by demos/lib/create_topics.py (confluent-kafka's
#   admin client) with the same bootstrap, topic and partition count; any other flag fails;
# - "the root of your checkout": the guide writes pipeline.toml, customers.tsv and
#   kafka-transit.log where it runs and reads only demos/ of the checkout, so it runs in a
#   scratch directory holding a `demos` link to this checkout's.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"
trap stack_exit EXIT

GUIDE=docs/getting-started.md
WORK=$STACK_LOGS/guide # removed when the suite passes, kept when it fails
stack_init # KAFKA_TRANSIT: the given binary, or a release build of this checkout
start_kafka
start_openbao
# openbao.sh enables transit/ for the other suites; the guide's reader has a fresh server.
BAO=$(bash "$OPENBAO_SH" install)
"$BAO" secrets disable transit >/dev/null || fail "could not disable transit/ on OpenBao"
export BOOTSTRAP=$KAFKA_BOOTSTRAP VAULT_ADDR VAULT_TOKEN

mkdir -p "$WORK/bin" "$WORK/checkout" "$WORK/blocks"
ln -s "$(readlink -f "$KAFKA_TRANSIT")" "$WORK/bin/kafka-transit"
ln -s "$REPO_ROOT/demos" "$WORK/checkout/demos"

# Each ```sh block into blocks/N.sh; its first line number in the guide on stdout.
python3 - "$REPO_ROOT/$GUIDE" "$WORK/blocks" >"$WORK/block-lines" <<'PY'
import sys
guide, out = sys.argv[1], sys.argv[2]
block, number = None, 0
for line_number, line in enumerate(open(guide, encoding="utf-8"), 1):
    if block is None and line.rstrip("\n") == "```sh":
        block, start = [], line_number + 1
    elif block is not None and line.rstrip("\n") == "```":
        number += 1
        open(f"{out}/{number}.sh", "w", encoding="utf-8").write("".join(block))
        print(start)
        block = None
    elif block is not None:
        block.append(line)
if block is not None:
    sys.exit(f"{guide}: a ```sh block is not closed")
PY
blocks=$(wc -l <"$WORK/block-lines")
[ "$blocks" -ge 8 ] || fail "$GUIDE has $blocks sh blocks; expected at least 8"

# The shell the guide's reader has: the stand-ins above, then each block, echoed first.
{
  printf 'ci_work=%q ci_bao=%q ci_repo=%q\n' "$WORK" "$BAO" "$REPO_ROOT"
  cat <<'PRELUDE'
set -euo pipefail
PATH="$ci_work/bin:$PATH"
cd "$ci_work/checkout"
if ! type -P vault >/dev/null; then vault() { "$ci_bao" "$@"; }; fi
if ! type -P kafka-topics.sh >/dev/null; then
  kafka-topics.sh() {
    local bootstrap="" topic="" partitions=1 create=false
    while [ $# -gt 0 ]; do
      case $1 in
        --bootstrap-server) bootstrap=$2; shift 2 ;;
        --create) create=true; shift ;;
        --topic) topic=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        *) echo "kafka-topics.sh (CI stand-in): $1 is not handled" >&2; return 2 ;;
      esac
    done
    [ "$create" = true ] && [ -n "$bootstrap" ] && [ -n "$topic" ] \
      || { echo "kafka-topics.sh (CI stand-in): only --create with --bootstrap-server and --topic" >&2; return 2; }
    python3 "$ci_repo/demos/lib/create_topics.py" "$bootstrap" "$topic:$partitions" \
      && echo "(CI stand-in for kafka-topics.sh) created topic $topic with $partitions partition(s)"
  }
fi
# The command that ends the shell, for the failure message; a runner the guide started and
# did not stop is stopped with it.
trap 'printf "%s (exit status %s)" "$BASH_COMMAND" "$?" >"$ci_work/failed-command"' ERR
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
PRELUDE
  for ((n = 1; n <= blocks; n++)); do
    cat <<BLOCK
echo $n >"\$ci_work/current-block"
printf '\n\033[1m-- block $n ($GUIDE line $(sed -n "${n}p" "$WORK/block-lines"))\033[0m\n'
sed 's/^/   \$ /' "\$ci_work/blocks/$n.sh"
source "\$ci_work/blocks/$n.sh"
BLOCK
  done
  echo 'echo done >"$ci_work/current-block"'
} >"$WORK/guide.sh"

say "running the $blocks sh blocks of $GUIDE in one bash (in $WORK/checkout)"
started=$SECONDS
if ! bash "$WORK/guide.sh" 2>&1 | tee "$WORK/guide.log"; then
  n=$(cat "$WORK/current-block" 2>/dev/null || echo 0)
  if [ -s "$WORK/checkout/kafka-transit.log" ]; then
    # Its last warnings and errors (its last lines are those of the stop on the way out).
    printf '\nkafka-transit.log, the last warnings and errors:\n' >&2
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/checkout/kafka-transit.log" | grep -E '^[^ ]+ +(WARN|ERROR) ' \
      | tail -n 3 | cut -c1-400 >&2 || echo "(none)" >&2
  fi
  if [ "$n" = done ]; then fail "the guide's shell failed after its last block (output: $WORK/guide.log)"; fi
  fail "block $n of $GUIDE (line $(sed -n "${n}p" "$WORK/block-lines")) failed: $(cat "$WORK/failed-command" 2>/dev/null || echo "?") (output: $WORK/guide.log; the runner's log, if it started: $WORK/checkout/kafka-transit.log)"
fi
[ "$(cat "$WORK/current-block")" = done ] || fail "the guide's shell stopped before its last block"
say "every block ran ($((SECONDS - started))s); checking what it left"

# What the guide produced: three key<TAB>JSON lines; every string in them is personal.
produced=$WORK/checkout/customers.tsv
[ "$(wc -l <"$produced")" -eq 3 ] || fail "customers.tsv has $(wc -l <"$produced") lines, not 3"
python3 - "$produced" >"$WORK/plaintexts" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    key, value = line.rstrip("\n").split("\t")
    for text in json.loads(value).values():
        print(text)
PY

# The guide creates only customers.raw (3 partitions); the runner created the sink topic
# like it (sink.create_topics), on a cluster with automatic topic creation off.
partitions=$(python3 - "$KAFKA_BOOTSTRAP" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
topics = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=10).topics
print(len(topics["customers.protected"].partitions) if "customers.protected" in topics else 0)
PY
)
[ "$partitions" -eq 3 ] || fail "customers.protected has $partitions partitions; the runner should have created it with the 3 of customers.raw"
say "the runner created customers.protected with the 3 partitions of customers.raw"
read_records customers.protected >"$WORK/protected.tsv"
[ "$(wc -l <"$WORK/protected.tsv")" -eq 3 ] || fail "customers.protected has $(wc -l <"$WORK/protected.tsv") records, not 3"
if cut -f2 "$WORK/protected.tsv" | grep -v '^vault:v1:' | grep -q .; then
  fail "a value on customers.protected is not a vault:v1: ciphertext: $(cut -f2 "$WORK/protected.tsv")"
fi
[ "$(cut -f1 "$WORK/protected.tsv" | sort | tr '\n' ' ')" = "customer-1 customer-2 customer-3 " ] \
  || fail "customers.protected's keys are not customer-1..3: $(cut -f1 "$WORK/protected.tsv")"
raw_dump customers.protected >"$WORK/protected.raw"
if grep -F -f "$WORK/plaintexts" "$WORK/protected.raw"; then
  fail "produced plaintext (above) is on customers.protected"
fi
[ "$(count_distinct_keys customers.dlq)" -eq 0 ] || fail "records were dead-lettered to customers.dlq"

# The consumer's lines ("   KEY | [HEADERS | ]VALUE"), not the guide's echoed commands.
python3 - "$produced" "$WORK/guide.log" <<'PY' || fail "the consumer did not print the three original records"
import sys
shown = open(sys.argv[2], encoding="utf-8").read().splitlines()
for line in open(sys.argv[1], encoding="utf-8"):
    key, value = line.rstrip("\n").split("\t")
    if not any(s.startswith(f"   {key} | ") and s.endswith(f" | {value}") for s in shown):
        sys.exit(f"no consumer line shows {key} | {value}")
PY
grep -q 'consumer: decrypted 3 records from customers.protected .*, all equal to the originals' "$WORK/guide.log" \
  || fail "the consumer did not report 3 records equal to the originals"
grep -q 'stopped cleanly' "$WORK/checkout/kafka-transit.log" || fail "no clean stop in the runner's log"
if grep -qF -f "$WORK/plaintexts" "$WORK/checkout/kafka-transit.log"; then fail "record contents in the runner's log"; fi
say "getting started: passed in ${SECONDS}s (the guide's blocks took $((SECONDS - started))s)"

# shellcheck shell=bash
# The local stack for demos and end-to-end tests: a tansu Kafka broker and a vault-dev
# server as separate processes on loopback, started on free ports and stopped on exit.
#
#   source demos/lib/stack.sh
#   stack_init            # builds kafka-transit + vault-dev (release), installs tansu once
#   start_tansu           # exports KAFKA_BOOTSTRAP
#   start_vault_dev       # exports VAULT_ADDR, VAULT_TOKEN
#   ...                   # everything started is stopped when the shell exits

TANSU_VERSION=0.6.0
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KT_CACHE="${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}"
TANSU="${TANSU_BIN:-$KT_CACHE/tansu-$TANSU_VERSION/bin/tansu}"
STACK_LOGS="${STACK_LOGS:-$(mktemp -d -t kafka-transit-stack.XXXXXX)}"
STACK_PIDS=()

# Debian's kcat links Debian's librdkafka 2.0.2, which cannot read tansu's ApiVersions
# reply ("Read underflow"). The same kcat works with the newer librdkafka that the
# confluent-kafka wheel ships (2.16), so kcat runs with that library first in the path.
use_wheel_librdkafka_for_kcat() {
  local wheel_lib
  wheel_lib=$(python3 - <<'PY'
import glob, os, confluent_kafka
libs = os.path.join(os.path.dirname(confluent_kafka.__file__), "..", "confluent_kafka.libs")
print(next(iter(sorted(glob.glob(os.path.join(libs, "librdkafka*.so*")))), ""))
PY
)
  [ -n "$wheel_lib" ] || fail "confluent-kafka's librdkafka not found: pip install -r demos/python/requirements.txt"
  mkdir -p "$KT_CACHE/kcat-librdkafka"
  ln -sf "$(readlink -f "$wheel_lib")" "$KT_CACHE/kcat-librdkafka/librdkafka.so.1"
  export KCAT_LIBRARY_PATH="$KT_CACHE/kcat-librdkafka"
}
kcat() { LD_LIBRARY_PATH="${KCAT_LIBRARY_PATH:-}" command kcat "$@"; }

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf '\033[31mFAILED: %s\033[0m\n' "$*" >&2; exit 1; }

stop_stack() {
  local pid
  for pid in "${STACK_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STACK_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
}
trap stop_stack EXIT

# Release builds of the host and vault-dev, and tansu (cached by version: its first
# build takes 20-30 minutes on two cores).
stack_init() {
  command -v kcat >/dev/null || fail "kcat is missing: apt-get install kcat"
  use_wheel_librdkafka_for_kcat
  if [ ! -x "$TANSU" ]; then
    say "installing tansu $TANSU_VERSION into $KT_CACHE (first time only; 20-30 minutes)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
      --root "$KT_CACHE/tansu-$TANSU_VERSION"
  fi
  say "building kafka-transit and vault-dev (release)"
  (cd "$REPO_ROOT" && cargo build --release -p kafka-transit -p vault-dev --bins)
  local target_dir
  target_dir="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  KAFKA_TRANSIT="$target_dir/release/kafka-transit"
  VAULT_DEV="$target_dir/release/vault-dev"
  export KAFKA_TRANSIT VAULT_DEV
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

start_tansu() {
  local port
  port=$(free_port)
  "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$STACK_LOGS/tansu.log" 2>&1 &
  STACK_PIDS+=($!)
  export KAFKA_BOOTSTRAP="127.0.0.1:$port"
  wait_for 30 "tansu on $KAFKA_BOOTSTRAP" kcat -b "$KAFKA_BOOTSTRAP" -L -m 2
  say "tansu broker on $KAFKA_BOOTSTRAP (log: $STACK_LOGS/tansu.log)"
}

# start_vault_dev [extra vault-dev flags...]
start_vault_dev() {
  local port
  port=$(free_port)
  export VAULT_TOKEN="${VAULT_TOKEN:-dev-root-$RANDOM$RANDOM}"
  VAULT_DEV_ROOT_TOKEN="$VAULT_TOKEN" "$VAULT_DEV" --listen "127.0.0.1:$port" "$@" \
    >"$STACK_LOGS/vault-dev.log" 2>&1 &
  STACK_PIDS+=($!)
  export VAULT_ADDR="http://127.0.0.1:$port"
  wait_for 30 "vault-dev on $VAULT_ADDR" curl -sf "$VAULT_ADDR/v1/sys/health"
  say "vault-dev on $VAULT_ADDR (log: $STACK_LOGS/vault-dev.log)"
}

# create_topics NAME[:PARTITIONS]...
create_topics() {
  python3 "$REPO_ROOT/demos/lib/create_topics.py" "$KAFKA_BOOTSTRAP" "$@"
}

# vault_write PATH JSON: a Vault API call with the root token.
vault_write() {
  curl -sf -X POST -H "X-Vault-Token: $VAULT_TOKEN" -d "$2" "$VAULT_ADDR/v1/$1" >/dev/null
}

# count_distinct_keys TOPIC: distinct record keys on a topic, read the way an operator would.
count_distinct_keys() {
  kcat -b "$KAFKA_BOOTSTRAP" -C -t "$1" -o beginning -e -q -f '%k\n' 2>/dev/null | sort -u | grep -c . || true
}

# wait_for_keys TOPIC COUNT SECONDS
wait_for_keys() {
  local topic=$1 want=$2 seconds=$3
  local deadline=$((SECONDS + seconds)) have=0
  while :; do
    have=$(count_distinct_keys "$topic")
    [ "$have" -ge "$want" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || fail "$topic has $have distinct keys after ${seconds}s; expected $want"
    sleep 1
  done
}

# write_pipeline FILE FROM TO POLICY KEY [extra TOML]
write_pipeline() {
  cat >"$1" <<TOML
[source]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topics = ["$2"]
group_id = "kafka-transit-$4-$2"

[sink]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topic = "$3"

[vault]
address = "$VAULT_ADDR"
token_env = "VAULT_TOKEN"

[policy]
builtin = "$4"
[policy.config]
key = "$5"

[errors]
on_failure = "dead-letter"
dead_letter_topic = "$2.dlq"

[pipeline]
progress_interval = "2s"
${6:-}
TOML
}

# ---------------------------------------------------------------------------------------
# Helpers for the demonstrations (demos/0*.sh).

# build_kafka_transit: only the release binary (no tansu), for demos run against a stack
# that is already up (docker compose, your own cluster).
build_kafka_transit() {
  say "building kafka-transit (release)"
  (cd "$REPO_ROOT" && cargo build --release -p kafka-transit --bin kafka-transit)
  KAFKA_TRANSIT="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/kafka-transit"
  export KAFKA_TRANSIT
}

# demo_stack: the stack a demo runs against. With KAFKA_BOOTSTRAP, VAULT_ADDR and
# VAULT_TOKEN all set (run-local.sh, docker compose, ...) it uses that stack; otherwise it
# starts tansu and vault-dev, which the EXIT trap stops. Sets DEMO_TOPIC_SUFFIX: a broker
# that outlives the demo keeps earlier runs' records, so a re-run there gets fresh topics
# (".<epoch>") unless DEMO_TOPIC_SUFFIX is set (run-local.sh sets it empty).
demo_stack() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ] && [ -n "${VAULT_ADDR:-}" ] && [ -n "${VAULT_TOKEN:-}" ]; then
    command -v kcat >/dev/null || fail "kcat is missing: apt-get install kcat"
    use_wheel_librdkafka_for_kcat # what stack_init does for kcat, as this shell skips it
    [ -x "${KAFKA_TRANSIT:-}" ] || build_kafka_transit
    DEMO_TOPIC_SUFFIX="${DEMO_TOPIC_SUFFIX-.$(date +%s)}"
    say "using the running stack: Kafka $KAFKA_BOOTSTRAP, Vault $VAULT_ADDR"
  else
    stack_init
    start_tansu
    start_vault_dev
    DEMO_TOPIC_SUFFIX=""
  fi
}

# step TEXT: a transcript heading; check TEXT: an expectation that held.
step() { printf '\n\033[1m-- %s\033[0m\n' "$*"; }
check() { printf '   \033[32mok\033[0m %s\n' "$*"; }

# clock; since START: wall-clock seconds with one decimal, for the transcript.
clock() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.1fs", b - a }'; }

# show_records [N] [WIDTH]: "key<TAB>value" lines on stdin, printed as "key | value",
# the first N only, values truncated to WIDTH characters.
show_records() {
  awk -F '\t' -v n="${1:-3}" -v w="${2:-100}" '
    NR <= n { v = substr($0, length($1) + 2); if (length(v) > w) v = substr(v, 1, w) "…"
              printf "   %s | %s\n", $1, v }
    END { if (NR > n) printf "   … and %d more\n", NR - n }'
}

# admin_view TOPIC: every record's key and value, read with kcat as a Kafka operator can.
admin_view() {
  kcat -b "$KAFKA_BOOTSTRAP" -C -t "$1" -o beginning -e -q -f '%k\t%s\n'
}

# run_pipeline_until CONFIG TOPIC COUNT LOG: runs kafka-transit until TOPIC holds COUNT
# distinct keys, then stops it with SIGTERM (it finishes, commits and must exit 0), and
# prints its final counters and the wall-clock time (start-up and group join included).
run_pipeline_until() {
  local config=$1 topic=$2 count=$3 log=$4 started
  started=$(clock)
  "$KAFKA_TRANSIT" --log-format json run --config "$config" >"$log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid") # stopped by the EXIT trap if a wait below fails
  wait_for_keys "$topic" "$count" 240
  kill -TERM "$pid"
  wait "$pid" || fail "kafka-transit did not stop cleanly (log: $log)"
  local kept=() other
  for other in "${STACK_PIDS[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
  STACK_PIDS=("${kept[@]}")
  python3 - "$log" "$(since "$started")" <<'PY'
import json, sys
final = {}
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("fields", {}).get("message") == "final":
        final = event["fields"]
print(f"   kafka-transit: {final.get('records_in', '?')} in, {final.get('records_out', '?')} out, "
      f"{final.get('dead_lettered', '?')} dead-lettered, {final.get('vault_requests', '?')} Vault "
      f"request(s), {sys.argv[2]} wall clock")
PY
}

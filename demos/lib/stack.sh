# shellcheck shell=bash
# The local stack for demos and end-to-end tests: Apache Kafka (single-node KRaft, from
# Maven Central jars) and OpenBao (Vault's open-source fork, the upstream release binary)
# as separate processes on loopback, started on free ports and stopped on exit.
#
#   source demos/lib/stack.sh
#   stack_init                   # checks tools; installs Kafka and OpenBao once; builds kafka-transit
#   start_kafka                  # exports KAFKA_BOOTSTRAP
#   start_kafka SINK_BOOTSTRAP --sasl-ssl   # a second cluster; sets SINK_BOOTSTRAP and SINK_KAFKA_DIR
#   start_openbao [--tls]        # exports VAULT_ADDR, VAULT_TOKEN (and VAULT_CACERT with --tls)
#   start_openbao --persistent   # the same on a real server that openbao_stop/openbao_restart take down and up
#   kafka_kill SINK_BOOTSTRAP    # kill -9 a cluster start_kafka started; kafka_restart, kafka_pause, kafka_resume
#   start_registry               # exports SCHEMA_REGISTRY (Apicurio Registry's Confluent API); registry_kill, registry_restart
#   source_properties FILE 'name = value'...   # [source.properties] lines for a pipeline file
#   sink CMD...                  # CMD (create_topics, count_distinct_keys, ...) on the sink cluster
#   produce_at_rate TOPIC RECORDS.tsv RATE LOG  # an application producing in the background
#   read_records TOPIC [read_committed|read_uncommitted] >FILE   # key<TAB>value per record
#   decrypt_check KEY ORIGINALS.tsv PROTECTED.tsv   # encrypt-value output decrypts to the originals
#   pipeline_file / start_pipeline / stop_pipeline  # a runner of a built-in policy in the background
#   record_file dump|produce|count ...  # records as JSON lines, byte for byte (keys, values, headers)
#   ...                          # everything started is stopped when the shell exits
#
# .ci/kafka/kafka.sh, .ci/openbao/openbao.sh and .ci/schema-registry/registry.sh do the
# work and can be run by hand.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KT_CACHE="${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}"
KAFKA_SH="$REPO_ROOT/.ci/kafka/kafka.sh"
OPENBAO_SH="$REPO_ROOT/.ci/openbao/openbao.sh"
REGISTRY_SH="$REPO_ROOT/.ci/schema-registry/registry.sh"
# Brokers' data and every log: removed when the script succeeds (a run leaves 1-2 GB),
# kept when it fails, and never removed when the caller chose the directory.
if [ -n "${STACK_LOGS:-}" ]; then
  STACK_LOGS_OWNED=false
else
  STACK_LOGS=$(mktemp -d -t kafka-transit-stack.XXXXXX)
  STACK_LOGS_OWNED=true
fi
STACK_PIDS=()     # processes this shell started (kafka-transit, producers)
STACK_SERVICES=() # "kafka DIR" / "openbao DIR" / "registry DIR": stopped through their scripts

# Debian's kcat links Debian's librdkafka 2.0.2, whose SCRAM login Kafka 4.x refuses even
# with the right password (fixed in librdkafka 2.6.1). The same kcat works with the newer
# librdkafka that the confluent-kafka wheel ships, so kcat runs with that library first.
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
  local pid service
  for pid in "${STACK_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STACK_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
  for service in "${STACK_SERVICES[@]}"; do
    case $service in
      kafka\ *) bash "$KAFKA_SH" stop "${service#kafka }" >/dev/null 2>&1 || true ;;
      openbao\ *) bash "$OPENBAO_SH" stop "${service#openbao }" >/dev/null 2>&1 || true ;;
      registry\ *) bash "$REGISTRY_SH" stop "${service#registry }" >/dev/null 2>&1 || true ;;
    esac
  done
  STACK_SERVICES=()
}
stack_exit() {
  local status=$?
  stop_stack
  if [ "$status" -ne 0 ]; then
    printf 'logs and broker data kept in %s\n' "$STACK_LOGS" >&2
  elif [ "$STACK_LOGS_OWNED" = true ]; then
    rm -rf "$STACK_LOGS"
  fi
}
trap stack_exit EXIT

# require_tools [--servers]: every program and Python package the demos use (and, with
# --servers, what running Kafka and OpenBao here needs), named when missing. `type -P`
# looks only at executables on PATH, never at shell functions of the same name.
require_tools() {
  local missing=() tool tools=(kcat curl python3)
  [ "${1:-}" != --servers ] || tools+=(openssl java)
  for tool in "${tools[@]}"; do
    type -P "$tool" >/dev/null || missing+=("$tool")
  done
  # Maven only fetches Kafka's jars the first time.
  [ "${1:-}" != --servers ] || bash "$KAFKA_SH" installed >/dev/null 2>&1 || type -P mvn >/dev/null \
    || missing+=(mvn)
  [ ${#missing[@]} -eq 0 ] || fail "missing: ${missing[*]} (Debian: apt-get install kcat curl python3 openssl openjdk-17-jre-headless maven; see docs/testing.md, \"Tests and CI\")"
  python3 -c 'import confluent_kafka, hvac, cryptography' 2>/dev/null \
    || fail "missing Python packages: pip install -r $REPO_ROOT/demos/python/requirements.txt"
  use_wheel_librdkafka_for_kcat
}

# Installs Apache Kafka's jars and OpenBao (each once, cached by version) and builds
# kafka-transit (release), unless KAFKA_TRANSIT already names a built binary.
stack_init() {
  require_tools --servers
  say "Apache Kafka jars and OpenBao (cached by version under $KT_CACHE; the first time takes a while)"
  bash "$KAFKA_SH" install >/dev/null
  bash "$OPENBAO_SH" install >/dev/null
  if [ -x "${KAFKA_TRANSIT:-}" ]; then say "using kafka-transit at $KAFKA_TRANSIT"; else build_kafka_transit; fi
}

target_dir() {
  (cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps) \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  try_wait_for "$seconds" "$@" || fail "timed out after ${seconds}s waiting for $what"
}

# try_wait_for SECONDS COMMAND...: wait_for, returning 1 after SECONDS instead of failing
# the script (for suites that report every check and go on).
try_wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# has_partitions LOG: a runner's JSON log (--log-format json) has an assignment of at
# least one source partition.
has_partitions() {
  grep '"source partitions assigned' "$1" | grep -q '"partitions":[1-9]'
}

# stack_unless_given: uses the Kafka and Vault that KAFKA_BOOTSTRAP, VAULT_ADDR and
# VAULT_TOKEN name when all three are set (plain http Vault, transit at transit/), and
# otherwise starts Apache Kafka and OpenBao here (the benchmark scripts).
stack_unless_given() {
  if [ -z "${KAFKA_BOOTSTRAP:-}" ] || [ -z "${VAULT_ADDR:-}" ] || [ -z "${VAULT_TOKEN:-}" ]; then
    stack_init
    start_kafka
    start_openbao
  fi
}

# start_kafka [VAR] [--sasl-ssl]: a fresh single-node cluster; its bootstrap address goes
# into VAR (default KAFKA_BOOTSTRAP), its directory into ${VAR%_BOOTSTRAP}_KAFKA_DIR
# (client.properties, ca.pem and sasl-password for --sasl-ssl).
start_kafka() {
  local var=KAFKA_BOOTSTRAP
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then var=$1; shift; fi
  local dir="$STACK_LOGS/kafka-${var,,}" bootstrap
  STACK_SERVICES+=("kafka $dir")
  bootstrap=$(bash "$KAFKA_SH" start "$dir" "$@") || fail "Apache Kafka did not start (log: $dir)"
  printf -v "$var" '%s' "$bootstrap"
  printf -v "${var%_BOOTSTRAP}_KAFKA_DIR" '%s' "$dir"
  export "${var?}" "${var%_BOOTSTRAP}_KAFKA_DIR"
  say "Apache Kafka on $bootstrap ${*:-} (data and log: $dir)"
}

# start_openbao [--tls|--persistent]: an OpenBao dev server with transit and AppRole
# enabled; --persistent: a real one (file storage, one unseal key) that keeps its keys and
# tokens across openbao_stop and openbao_restart.
start_openbao() {
  local dir="$STACK_LOGS/openbao${1:+-${1#--}}"
  STACK_SERVICES+=("openbao $dir")
  VAULT_ADDR=$(bash "$OPENBAO_SH" start "$dir" "$@") || fail "OpenBao did not start (log: $dir/bao.log)"
  VAULT_TOKEN=$(cat "$dir/token")
  export VAULT_ADDR VAULT_TOKEN
  if [ -f "$dir/ca.pem" ]; then export VAULT_CACERT="$dir/ca.pem"; fi
  export OPENBAO_DIR=$dir
  say "OpenBao on $VAULT_ADDR (log: $dir/bao.log)"
}

# start_registry: Apicurio Registry (Java 21+, installed once) with its Confluent API at
# SCHEMA_REGISTRY; its schemas survive registry_kill (SIGKILL) and registry_restart (same
# address).
start_registry() {
  local dir="$STACK_LOGS/schema-registry"
  bash "$REGISTRY_SH" install >/dev/null || fail "Apicurio Registry could not be installed"
  STACK_SERVICES+=("registry $dir")
  SCHEMA_REGISTRY=$(bash "$REGISTRY_SH" start "$dir") || fail "the registry did not start (log: $dir/registry.log)"
  export SCHEMA_REGISTRY REGISTRY_DIR=$dir
  say "Apicurio Registry at $SCHEMA_REGISTRY (log: $dir/registry.log)"
}
registry_kill() { bash "$REGISTRY_SH" kill "$REGISTRY_DIR" || fail "kill -9 of the registry failed"; }
registry_restart() {
  bash "$REGISTRY_SH" restart "$REGISTRY_DIR" >/dev/null || fail "the registry did not restart (log: $REGISTRY_DIR/registry.log)"
}

# openbao_seal / openbao_unseal: a real Vault outage, for the OpenBao started last.
openbao_seal() { bash "$OPENBAO_SH" seal "$OPENBAO_DIR"; }
openbao_unseal() { bash "$OPENBAO_SH" unseal "$OPENBAO_DIR"; }
# openbao_stop / openbao_restart: the OpenBao started last with --persistent goes down
# (its process ends) and comes back on the same data and address, unsealed.
openbao_stop() { bash "$OPENBAO_SH" stop "$OPENBAO_DIR"; }
openbao_restart() {
  bash "$OPENBAO_SH" restart "$OPENBAO_DIR" >/dev/null || fail "OpenBao did not restart (log: $OPENBAO_DIR/bao.log)"
}

# vault_token POLICY...: a new token (1 hour) holding only POLICYs (and OpenBao's default).
vault_token() {
  local policies
  policies=$(printf '"%s",' "$@")
  curl -sf ${VAULT_CACERT:+--cacert "$VAULT_CACERT"} -X POST -H "X-Vault-Token: $VAULT_TOKEN" \
    -d "{\"policies\":[${policies%,}],\"ttl\":\"1h\"}" "$VAULT_ADDR/v1/auth/token/create" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["auth"]["client_token"])'
}

# kafka_kill VAR / kafka_restart VAR / kafka_pause VAR / kafka_resume VAR: the cluster that
# `start_kafka VAR` started is killed with SIGKILL, started again on its data and address,
# or its JVM stopped (SIGSTOP) and continued (SIGCONT).
kafka_dir_of() {
  local dir_var="${1%_BOOTSTRAP}_KAFKA_DIR"
  [ -n "${!dir_var:-}" ] || fail "no cluster was started as $1 (start_kafka $1)"
  printf '%s' "${!dir_var}"
}
kafka_kill() { bash "$KAFKA_SH" kill "$(kafka_dir_of "$1")" || fail "kill -9 of the $1 broker failed"; }
kafka_restart() {
  local dir bootstrap
  dir=$(kafka_dir_of "$1")
  bootstrap=$(bash "$KAFKA_SH" restart "$dir") || fail "the $1 broker did not restart (log: $dir/broker.log)"
  [ "$bootstrap" = "${!1}" ] || fail "the $1 broker came back on $bootstrap, not ${!1}"
}
kafka_pause() { bash "$KAFKA_SH" pause "$(kafka_dir_of "$1")" || fail "SIGSTOP of the $1 broker failed"; }
kafka_resume() { bash "$KAFKA_SH" resume "$(kafka_dir_of "$1")" || fail "SIGCONT of the $1 broker failed"; }

# create_topics NAME[:PARTITIONS]...
create_topics() {
  python3 "$REPO_ROOT/demos/lib/create_topics.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# vault_write PATH JSON: a Vault API call with the root token.
vault_write() {
  curl -sf ${VAULT_CACERT:+--cacert "$VAULT_CACERT"} -X POST -H "X-Vault-Token: $VAULT_TOKEN" \
    -d "$2" "$VAULT_ADDR/v1/$1" >/dev/null
}

# admin_kcat ARGS...: kcat on the cluster an operator looks at: KAFKA_BOOTSTRAP, or
# KCAT_BOOTSTRAP with the librdkafka properties file KCAT_CONFIG (a SASL_SSL cluster).
admin_kcat() {
  kcat -b "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" ${KCAT_CONFIG:+-F "$KCAT_CONFIG"} "$@"
}

# sink CMD...: CMD (create_topics, count_distinct_keys, wait_for_keys, read_records,
# admin_kcat, ...) on the sink cluster: SINK_BOOTSTRAP (start_kafka SINK_BOOTSTRAP), with
# the librdkafka properties file SINK_KCAT_CONFIG if it needs one (SASL_SSL).
sink() { KCAT_BOOTSTRAP=$SINK_BOOTSTRAP KCAT_CONFIG=${SINK_KCAT_CONFIG:-} "$@"; }

# count_distinct_keys TOPIC [ONLY]: distinct record keys on a topic (those matching the
# regular expression ONLY), up to where it ended when asked (so it answers while
# producers keep writing); of committed transactions only.
count_distinct_keys() {
  python3 "$REPO_ROOT/demos/lib/count_keys.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@" 2>/dev/null || echo 0
}

# wait_for_keys TOPIC COUNT SECONDS [HINT]: HINT (e.g. "log: FILE") ends the failure message.
wait_for_keys() {
  local topic=$1 want=$2 seconds=$3 hint=${4:+ (${4})}
  local deadline=$((SECONDS + seconds)) have=0
  while :; do
    have=$(count_distinct_keys "$topic")
    [ "$have" -ge "$want" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || fail "$topic has $have distinct keys after ${seconds}s; expected $want$hint"
    sleep 1
  done
}

# try_wait_for_keys TOPIC COUNT SECONDS [ONLY]: wait_for_keys (of the keys matching ONLY),
# returning 1 after SECONDS instead of failing the script.
try_wait_for_keys() {
  local deadline=$((SECONDS + $3))
  until [ "$(count_distinct_keys "$1" "${4:-}")" -ge "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# read_records TOPIC [read_committed|read_uncommitted]: one key<TAB>value line per record,
# every partition from the beginning to where it ended when asked, with that
# isolation.level (default read_committed, as a downstream consumer of an exactly-once
# pipeline reads; read_uncommitted adds aborted and open transactions' records).
read_records() {
  python3 "$REPO_ROOT/demos/lib/read_topic.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# produce_at_rate TOPIC RECORDS.tsv RATE LOG: an application sending the key<TAB>value
# lines of RECORDS.tsv at RATE records/s (idempotent producer, ordinary batching), in the
# background, its output in LOG; its pid goes into PRODUCER_PID (and STACK_PIDS), and
# `wait "$PRODUCER_PID"` fails if not every record was acknowledged.
produce_at_rate() {
  python3 "$REPO_ROOT/demos/lib/produce_at_rate.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$1" "$2" "$3" \
    >"$4" 2>&1 &
  PRODUCER_PID=$!
  STACK_PIDS+=("$PRODUCER_PID")
}

# tenant_stream TOPIC RATE ACKED.tsv PREFIX LOG TENANT...: tenants' application sending
# JSON records with an SSN and a `tenant` header at RATE records/s until `kill -TERM
# "$STREAM_PID"`; what the cluster acknowledged goes to ACKED.tsv (key<TAB>tenant<TAB>value),
# and `wait "$STREAM_PID"` fails if a record was not acknowledged (demos/lib/tenant_stream.py).
tenant_stream() {
  local topic=$1 rate=$2 acked=$3 prefix=$4 log=$5
  shift 5
  python3 "$REPO_ROOT/demos/lib/tenant_stream.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$topic" "$rate" \
    "$acked" "$prefix" "$@" >"$log" 2>&1 &
  STREAM_PID=$!
  STACK_PIDS+=("$STREAM_PID")
}

# fields_check TOPIC ORIGINALS.tsv FIELD KEY_PREFIX exactly-once|at-least-once: every
# original on TOPIC (read_committed), FIELD a ciphertext that OpenBao decrypts back and
# every other byte unchanged (demos/lib/fields_check.py).
fields_check() {
  python3 "$REPO_ROOT/demos/lib/fields_check.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# dead_letter_check TOPIC EXPECTED.tsv: each key<TAB>kind<TAB>pattern of EXPECTED on the
# dead-letter TOPIC with that error kind and a reason matching pattern, and no other key
# (demos/lib/dead_letter_check.py).
dead_letter_check() {
  python3 "$REPO_ROOT/demos/lib/dead_letter_check.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# raw_dump [TOPIC...]: every record of the TOPICs (default: every topic of the cluster,
# internal ones too) as kcat reads it, read_uncommitted (so aborted transactions' records
# too): topic, partition, offset, then key, headers and value as raw bytes, one line each.
raw_dump() {
  local topics=("$@") topic
  if [ ${#topics[@]} -eq 0 ]; then
    mapfile -t topics < <(admin_kcat -L -J \
      | python3 -c 'import json, sys; print("\n".join(t["topic"] for t in json.load(sys.stdin)["topics"]))')
  fi
  for topic in "${topics[@]}"; do
    admin_kcat -C -t "$topic" -o beginning -e -q -X isolation.level=read_uncommitted \
      -f '%t %p %o key=%k headers=%h value=%s\n' || return 1
  done
}

# decrypt_check KEY ORIGINALS.tsv PROTECTED.tsv: every record of PROTECTED (key<TAB>value
# lines of encrypt-value output) decrypts with transit/decrypt (hvac, the root token) to
# the original value of its key, and PROTECTED holds every key of ORIGINALS and no other.
decrypt_check() {
  python3 "$REPO_ROOT/demos/lib/decrypt_check.py" "$@"
}

# write_pipeline FILE FROM TO POLICY KEY [extra [pipeline] TOML]: the sink is
# SINK_BOOTSTRAP when set (a second cluster: start_kafka SINK_BOOTSTRAP), else KAFKA_BOOTSTRAP.
write_pipeline() {
  cat >"$1" <<TOML
[source]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topics = ["$2"]
group_id = "kafka-transit-$4-$2"

[sink]
bootstrap_servers = "${SINK_BOOTSTRAP:-$KAFKA_BOOTSTRAP}"
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

# pipeline_file FILE POLICY SINK_TOPIC DEAD_LETTER_TOPIC 'POLICY CONFIG' SOURCE_TOPIC...: a
# pipeline reading the SOURCE_TOPICs of KAFKA_BOOTSTRAP (from the beginning) into SINK_TOPIC
# (a template of the source topic may do) of SINK_BOOTSTRAP or KAFKA_BOOTSTRAP, with
# `builtin = POLICY` and the [policy.config] lines given (TOML); Vault at VAULT_ADDR
# (VAULT_CACERT trusted when set) with the token in the variable PIPELINE_TOKEN_ENV
# (default VAULT_TOKEN); failures dead-lettered to DEAD_LETTER_TOPIC (source cluster);
# PIPELINE_SETTINGS (TOML lines), when set, go into its [pipeline] table.
pipeline_file() {
  local file=$1 policy=$2 sink_topic=$3 dead_letters=$4 config=$5
  shift 5
  local topics ca="" name
  topics=$(printf '"%s", ' "$@")
  name=$(basename "$file" .toml)
  [ -z "${VAULT_CACERT:-}" ] || ca="ca_cert = \"$VAULT_CACERT\""
  cat >"$file" <<TOML
[source]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topics = [${topics%, }]
group_id = "kafka-transit-$policy-$name"

[sink]
bootstrap_servers = "${SINK_BOOTSTRAP:-$KAFKA_BOOTSTRAP}"
topic = "$sink_topic"

[vault]
address = "$VAULT_ADDR"
token_env = "${PIPELINE_TOKEN_ENV:-VAULT_TOKEN}"
$ca

[policy]
builtin = "$policy"
[policy.config]
$config

[errors]
on_failure = "dead-letter"
dead_letter_topic = "$dead_letters"

[pipeline]
progress_interval = "2s"
${PIPELINE_SETTINGS:-}
TOML
}

# start_pipeline CONFIG LOG: kafka-transit runs CONFIG in the background (JSON log in LOG),
# its pid in PIPELINE_PID (and STACK_PIDS, so the EXIT trap stops it); returns once it
# has source partitions (fails after 60 s).
start_pipeline() {
  "$KAFKA_TRANSIT" --log-format json run --config "$1" >"$2" 2>&1 &
  PIPELINE_PID=$!
  STACK_PIDS+=("$PIPELINE_PID")
  wait_for 60 "partitions for $(basename "$1") (log: $2)" has_partitions "$2"
}

# stop_pipeline PID: SIGTERM, and its exit status (0: it stopped cleanly).
stop_pipeline() {
  local kept=() other status=0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" || status=$?
  for other in "${STACK_PIDS[@]}"; do [ "$other" = "$1" ] || kept+=("$other"); done
  STACK_PIDS=("${kept[@]}")
  return "$status"
}

# record_file dump TOPIC [isolation] >FILE / record_file produce FILE [options] / record_file
# count TOPIC: records as JSON lines, byte for byte (demos/lib/record_file.py).
record_file() {
  local command=$1
  shift
  python3 "$REPO_ROOT/demos/lib/record_file.py" "$command" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# try_wait_for_records TOPIC COUNT SECONDS: TOPIC holds at least COUNT records (read_committed),
# or 1 after SECONDS.
try_wait_for_records() {
  local deadline=$((SECONDS + $3))
  until [ "$(record_file count "$1" 2>/dev/null || echo 0)" -ge "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# topic_config TOPIC NAME=VALUE...: changes a topic's configuration (demos/lib/topic_config.py).
topic_config() {
  python3 "$REPO_ROOT/demos/lib/topic_config.py" "${KCAT_BOOTSTRAP:-$KAFKA_BOOTSTRAP}" "$@"
}

# run_until CONFIG TOPIC COUNT LOG: runs a pipeline until TOPIC holds COUNT distinct
# keys, then stops it with SIGTERM, which must end it cleanly.
run_until() {
  "$KAFKA_TRANSIT" run --config "$1" >"$4" 2>&1 &
  local pid=$!
  wait_for_keys "$2" "$3" 240
  kill -TERM "$pid"
  wait "$pid" || fail "kafka-transit did not stop cleanly (log: $4)"
}

# source_properties FILE LINE...: a [source.properties] table with LINEs
# ('"session.timeout.ms" = "6000"') in a pipeline file that write_pipeline wrote.
source_properties() {
  local file=$1 table='[source.properties]'
  shift
  table+=$(printf '\n%s' "$@")
  python3 - "$file" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
open(path, "w", encoding="utf-8").write(text.replace("\n[sink]\n", f"\n{table}\n\n[sink]\n", 1))
PY
}

# ---------------------------------------------------------------------------------------
# Helpers for the demonstrations (demos/0*.sh).

# build_kafka_transit: the release binary; alone (without stack_init) for demos run
# against a stack that is already up (docker compose, your own cluster).
build_kafka_transit() {
  say "building kafka-transit (release)"
  (cd "$REPO_ROOT" && cargo build --release -p kafka-transit --bin kafka-transit)
  KAFKA_TRANSIT="$(target_dir)/release/kafka-transit"
  export KAFKA_TRANSIT
}

# demo_stack: the stack a demo runs against. With KAFKA_BOOTSTRAP, VAULT_ADDR and
# VAULT_TOKEN all set (run-local.sh, docker compose, ...) it uses that stack; otherwise it
# starts Apache Kafka and OpenBao, which the EXIT trap stops. Sets DEMO_TOPIC_SUFFIX: a broker
# that outlives the demo keeps earlier runs' records, so a re-run there gets fresh topics
# (".<epoch>") unless DEMO_TOPIC_SUFFIX is set (run-local.sh sets it empty).
demo_stack() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ] && [ -n "${VAULT_ADDR:-}" ] && [ -n "${VAULT_TOKEN:-}" ]; then
    require_tools
    [ -x "${KAFKA_TRANSIT:-}" ] || build_kafka_transit
    DEMO_TOPIC_SUFFIX="${DEMO_TOPIC_SUFFIX-.$(date +%s)}"
    say "using the running stack: Kafka $KAFKA_BOOTSTRAP, Vault $VAULT_ADDR"
  else
    stack_init
    start_kafka
    start_openbao
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
  kcat -b "$KAFKA_BOOTSTRAP" -X isolation.level=read_committed -C -t "$1" -o beginning -e -q -f '%k\t%s\n'
}

# run_pipeline_until CONFIG TOPIC COUNT LOG [TOPIC2 COUNT2]: runs kafka-transit until TOPIC
# holds COUNT distinct keys (and TOPIC2, a dead-letter topic say, COUNT2), then stops it
# with SIGTERM (it finishes, commits and must exit 0), and prints its final counters and
# the wall-clock time (start-up and group join included).
run_pipeline_until() {
  local config=$1 topic=$2 count=$3 log=$4 started
  started=$(clock)
  "$KAFKA_TRANSIT" --log-format json run --config "$config" >"$log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid") # stopped by the EXIT trap if a wait below fails
  wait_for_keys "$topic" "$count" 240 "log: $log"
  [ -z "${5:-}" ] || wait_for_keys "$5" "$6" 240 "log: $log"
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

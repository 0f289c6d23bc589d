#!/usr/bin/env bash
# Chaos (issue 21): a steady stream of tenants' records through the release runner on
# Apache Kafka and OpenBao while, in turn,
#   1. OpenBao is stopped and restarted (a real server: file storage, unsealed again);
#   2. the source broker is killed with kill -9 and restarted on its data;
#   3. the sink broker hangs for 30 s (SIGSTOP, then SIGCONT);
#   4. the runner is killed with SIGKILL and a new one joins the same group;
# and hostile records are mixed in before each of these and at the end: a header name
# that is not UTF-8, tenants whose transit keys the runner's Vault token may not use, no
# tenant header, JSON of the wrong shape for fields = ["/ssn"] (a bare string, an array,
# a number), a value that is not JSON; and JSON whose other members must leave byte for
# byte as they came (a number beyond f64's precision, -0, 1E400).
#
# Policy encrypt-fields, key = "tenant-{header:tenant}", fields = ["/ssn"], plus
# allowed_keys = ["tenant-a", "tenant-b", "tenant-c"] when the built-in policies take it;
# dead letters on the source cluster. Source and sink are two single-node clusters, so
# each is disrupted alone. The runner's token comes from an ACL policy that allows
# transit/encrypt/tenant-a and tenant-b (and what signing exactly-once positions needs
# of kafka-transit-offsets) only: tenant-evil and tenant-c exist, the token may use
# neither. allowed_keys refuses tenant-evil before any Vault call; tenant-c, which it
# lists (an allowlist and Vault's grants out of step), gets Vault's 403, so that path is
# exercised too.
#
# The sequence runs once per delivery mode (default: at-least-once, then exactly-once;
# or name one or both as arguments). Then, for each mode:
#   - every ordinary record (and each byte-preserving one) is on the sink by key: at
#     least once, or exactly once read_committed; its /ssn a vault: ciphertext that
#     OpenBao decrypts back (hvac), every other byte of the value unchanged;
#   - every hostile record is on the dead-letter topic (source cluster) with
#     kafka-transit.error.kind = invalid-input and a reason naming its problem, and
#     none of them reached the sink;
#   - no SSN in clear anywhere on the sink cluster (kcat's raw dump of keys, headers and
#     values of every topic, read_uncommitted), nor in a runner log;
#   - no "panicked at" in any runner log, and the last runner exits 0 on SIGTERM.
# A failed check does not stop the sequence: every check is reported (PASS/FAIL, with
# timings per phase) and the suite exits 1 if any failed. CHAOS_BUDGET (seconds, default
# 360) bounds the whole suite: each run's waits get its share less what its disruptions
# take anyway, so a pipeline that stalls fails its checks in time instead of waiting.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"
source "$REPO_ROOT/demos/lib/checks.sh" # passed, failed, phase (PHASE_LABEL: the mode), problems

MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(at-least-once exactly-once)
for mode in "${MODES[@]}"; do
  case $mode in at-least-once | exactly-once) ;; *) fail "usage: chaos.sh [at-least-once] [exactly-once]" ;; esac
done
RATE=${CHAOS_RATE:-100}       # ordinary records per second from the tenants' application
BUDGET=${CHAOS_BUDGET:-360}   # seconds the whole suite may take (see above)
SINK_PAUSE=30                 # seconds the sink broker hangs
VAULT_DOWN=5                  # seconds OpenBao stays down
SOURCE_DOWN=3                 # seconds the source broker stays dead before its restart
SESSION_TIMEOUT_MS=6000       # so the group drops the SIGKILLed runner quickly
FIXED_PER_RUN=$((VAULT_DOWN + SOURCE_DOWN + 20 + SINK_PAUSE + 15)) # seconds a run takes besides its waits
SSN='[0-9]{3}-[0-9]{2}-[0-9]{4}'
WORK=$STACK_LOGS/chaos # removed with the brokers' data when every check passed
START=$SECONDS
DEADLINE=$((START + BUDGET))

# left CAP: seconds a wait may take: CAP, less if this run's share of the budget ends first.
left() {
  local rest=$((RUN_DEADLINE - SECONDS))
  [ "$rest" -gt 1 ] || rest=1
  if [ "$rest" -lt "$1" ]; then echo "$rest"; else echo "$1"; fi
}

stack_init
start_kafka                  # source cluster: KAFKA_BOOTSTRAP
start_kafka SINK_BOOTSTRAP   # sink cluster
start_openbao --persistent
say "stack up in $((SECONDS - START))s"

# kafka-transit-offsets signs exactly-once positions (pipeline.offsets_key's default).
for key in tenant-a tenant-b tenant-c tenant-evil kafka-transit-offsets; do
  vault_write "transit/keys/$key" '{}'
done
vault_write sys/policies/acl/chaos-runner "$(python3 -c 'import json; print(json.dumps({"policy": """
path "transit/encrypt/tenant-a" { capabilities = ["update"] }
path "transit/encrypt/tenant-b" { capabilities = ["update"] }
path "transit/datakey/plaintext/kafka-transit-offsets" { capabilities = ["update"] }
path "transit/decrypt/kafka-transit-offsets" { capabilities = ["update"] }
"""}))')"
RUNNER_TOKEN=$(vault_token chaos-runner)
# The premise of the forbidden-key records: the token encrypts for tenant-a, not for
# tenant-c or tenant-evil.
token_answer() { # KEY: the HTTP status of an encrypt with the runner's token
  curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $RUNNER_TOKEN" -d '{"plaintext":"eA=="}' \
    "$VAULT_ADDR/v1/transit/encrypt/$1"
}
if [ "$(token_answer tenant-a)" != 200 ] || [ "$(token_answer tenant-c)" != 403 ] || [ "$(token_answer tenant-evil)" != 403 ]; then
  fail "the runner's token should encrypt with tenant-a (got $(token_answer tenant-a)) and get 403 on tenant-c and tenant-evil (got $(token_answer tenant-c), $(token_answer tenant-evil))"
fi

# write_config FILE ALLOWED_KEYS_LINE: the pipeline of this run.
write_config() {
  cat >"$1" <<TOML
[source]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
topics = ["$RAW"]
group_id = "kafka-transit-chaos-$MODE"

[source.properties]
"session.timeout.ms" = "$SESSION_TIMEOUT_MS"

[sink]
bootstrap_servers = "$SINK_BOOTSTRAP"
topic = "$PROTECTED"

[vault]
address = "$VAULT_ADDR"
token_env = "CHAOS_RUNNER_TOKEN"

[policy]
builtin = "encrypt-fields"
[policy.config]
key = "tenant-{header:tenant}"
fields = ["/ssn"]
$2

[errors]
on_failure = "dead-letter"
dead_letter_topic = "$RAW.dlq"
# Back to work within 2 s of an outage's end, not the default 30 s.
max_retry_backoff = "2s"

[pipeline]
delivery = "$MODE"
batch_size = 100
progress_interval = "2s"
TOML
}

start_runner() { # LOG: a runner with the restricted token only; its pid in RUNNER_PID
  CHAOS_RUNNER_TOKEN=$RUNNER_TOKEN "$KAFKA_TRANSIT" --log-format json run --config "$RUN/pipeline.toml" >"$1" 2>&1 &
  RUNNER_PID=$!
  STACK_PIDS+=("$RUNNER_PID")
}
# Keys of the records that belong on the sink (o-: the stream, p-: byte-preserving), so
# that a hostile record that got through does not make up for a missing one.
sink_keys() { sink count_distinct_keys "$PROTECTED" '^[op]-'; }

# recovers WHAT: after a disruption ended, the sink gains two seconds' worth of records
# (read_committed, distinct keys) within 60 s: the pipeline works again.
recovers() {
  local base have limit
  base=$(sink_keys)
  limit=$(left 60)
  local deadline=$((SECONDS + limit)) started
  started=$(clock)
  while :; do
    have=$(sink_keys)
    if [ "$have" -ge $((base + 2 * RATE)) ]; then
      passed "$MODE: after $1 the pipeline moves again ($base -> $have keys on the sink within $(since "$started"))"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      failed "$MODE: after $1 the sink gained $((have - base)) keys in ${limit}s (expected $((2 * RATE))): the pipeline does not move (log: $RUNNER_LOG)"
      return 1
    fi
    sleep 1
  done
}

# produce_tsv KCAT_ARGS...: key<TAB>value lines from stdin to the source topic.
produce_tsv() { kcat -P -b "$KAFKA_BOOTSTRAP" -t "$RAW" -K $'\t' "$@" || failed "$MODE: kcat could not produce hostile records ($*)"; }

# hostile ROUND: one of each hostile record, produced with kcat (only kcat writes a header
# name that is not UTF-8; see stack.sh), keyed h-<mode>-<round>-<what>; their
# expectations (key, kind, reason pattern) go to hostile.tsv. The byte-preserving
# record, p-<mode>-<round>-precise, is no hostile one: it must reach the sink
# (precise.tsv, as key<TAB>tenant<TAB>value).
hostile() {
  local h="h-$MODE-$1" p="p-$MODE-$1-precise"
  local precise='{"amount":12345678901234567.89,"n":-0,"e":1E400,"ssn":"666-06-0001"}'
  printf '%s\t%s\n' "$h-badheader" '{"ssn":"666-01-0001"}' | produce_tsv -H $'\xff\xfe=x' -H tenant=a
  printf '%s\t%s\n' "$h-forbiddenkey" '{"ssn":"666-02-0001"}' | produce_tsv -H tenant=evil
  printf '%s\t%s\n' "$h-deniedkey" '{"ssn":"666-02-0002"}' | produce_tsv -H tenant=c
  printf '%s\t%s\n' "$h-notenant" '{"ssn":"666-03-0001"}' | produce_tsv
  printf '%s\t%s\n' "$h-string" '"333-33-3333"' "$h-array" '[{"ssn":"666-04-0001"}]' \
    "$h-number" '333333333' "$h-notjson" 'ssn: 666-05-0001' | produce_tsv -H tenant=a
  printf '%s\t%s\n' "$p" "$precise" | produce_tsv -H tenant=b
  printf '%s\tb\t%s\n' "$p" "$precise" >>"$RUN/precise.tsv"
  {
    printf '%s\tinvalid-input\t%s\n' "$h-badheader" 'not UTF-8'
    printf '%s\tinvalid-input\t%s\n' "$h-forbiddenkey" 'allowed_keys|not let this token use|permission denied'
    printf '%s\tinvalid-input\t%s\n' "$h-deniedkey" 'not let this token use|permission denied'
    printf '%s\tinvalid-input\t%s\n' "$h-notenant" 'header \W?tenant\b'
    local shape
    for shape in string array number; do printf '%s\tinvalid-input\t%s\n' "$h-$shape" '/ssn'; done
    printf '%s\tinvalid-input\t%s\n' "$h-notjson" 'not JSON'
  } >>"$RUN/hostile.tsv"
}

run_sequence() {
  MODE=$1 RUN=$WORK/$1 RAW=chaos-$1.raw PROTECTED=chaos-$1.protected
  PHASE_LABEL=$MODE
  mkdir -p "$RUN"
  : >"$RUN/hostile.tsv"
  : >"$RUN/precise.tsv"
  local runs_left=$2
  # The run's share of what is left, less what its disruptions take whatever happens
  # (the outages themselves, a broker's restart, the checks), is for its waits.
  RUN_DEADLINE=$((SECONDS + (DEADLINE - SECONDS) / runs_left - FIXED_PER_RUN))
  say "=== $MODE: $((RUN_DEADLINE - SECONDS))s of the budget for its waits"

  phase "start: topics, runner 1, the stream"
  create_topics "$RAW:3" "$RAW.dlq:1"
  sink create_topics "$PROTECTED:3"
  write_config "$RUN/pipeline.toml" 'allowed_keys = ["tenant-a", "tenant-b", "tenant-c"]'
  local validated
  if ! validated=$(CHAOS_RUNNER_TOKEN=$RUNNER_TOKEN "$KAFKA_TRANSIT" validate --config "$RUN/pipeline.toml" 2>&1); then
    grep -q 'allowed_keys' <<<"$validated" || fail "the pipeline does not validate: $validated"
    say "this build's encrypt-fields does not take allowed_keys; without it (Vault's 403 alone refuses tenant-evil): ${validated:0:200}"
    write_config "$RUN/pipeline.toml" ''
    CHAOS_RUNNER_TOKEN=$RUNNER_TOKEN "$KAFKA_TRANSIT" validate --config "$RUN/pipeline.toml" >/dev/null
  fi
  RUNNER_LOG=$RUN/runner-1.log
  start_runner "$RUNNER_LOG"
  wait_for "$(left 60)" "runner 1's partitions (log: $RUNNER_LOG)" has_partitions "$RUNNER_LOG"
  tenant_stream "$RAW" "$RATE" "$RUN/acked.tsv" "o-$MODE" "$RUN/stream.log" a b
  local stream=$STREAM_PID
  hostile 0
  recovers "the start" || true

  phase "1. OpenBao stopped ${VAULT_DOWN}s and restarted"
  hostile 1
  openbao_stop
  sleep "$VAULT_DOWN"
  openbao_restart
  recovers "OpenBao's restart" || true

  phase "2. source broker kill -9, restarted"
  hostile 2
  kafka_kill KAFKA_BOOTSTRAP
  sleep "$SOURCE_DOWN"
  kafka_restart KAFKA_BOOTSTRAP
  recovers "the source broker's restart" || true

  # SIGSTOP rather than a clean stop and start: a hung broker (a long GC pause, a frozen
  # VM, a black-holed network) keeps its connections open and answers nothing, so the
  # runner learns of it only through its own timeouts; a stopped one refuses connections
  # at once, much like the source broker's crash above. Nothing is lost in the broker
  # itself, so the 30 s are the outage, not a log recovery after it.
  phase "3. sink broker hung ${SINK_PAUSE}s (SIGSTOP/SIGCONT)"
  hostile 3
  kafka_pause SINK_BOOTSTRAP
  sleep "$SINK_PAUSE"
  kafka_resume SINK_BOOTSTRAP
  recovers "the sink broker's ${SINK_PAUSE}s hang" || true

  phase "4. runner SIGKILLed, runner 2 joins the group"
  hostile 4
  kill -0 "$RUNNER_PID" 2>/dev/null || failed "$MODE: runner 1 had stopped by itself before the kill (log: $RUNNER_LOG)"
  kill -9 "$RUNNER_PID" 2>/dev/null || true
  wait "$RUNNER_PID" 2>/dev/null || true
  RUNNER_LOG=$RUN/runner-2.log
  start_runner "$RUNNER_LOG"
  if try_wait_for "$(left 60)" has_partitions "$RUNNER_LOG"; then
    recovers "the runner's SIGKILL" || true
  else
    failed "$MODE: runner 2 got no partitions (log: $RUNNER_LOG)"
  fi

  phase "5. drain: the stream stops, all arrives"
  hostile 5
  kill -TERM "$stream" 2>/dev/null || true
  if wait "$stream"; then
    passed "$MODE: the tenants' application: $(tail -1 "$RUN/stream.log")"
  else
    failed "$MODE: the tenants' application failed: $(tail -3 "$RUN/stream.log")"
  fi
  cat "$RUN/acked.tsv" "$RUN/precise.tsv" >"$RUN/expected.tsv"
  local expected hostiles
  expected=$(wc -l <"$RUN/expected.tsv")
  hostiles=$(wc -l <"$RUN/hostile.tsv")
  local limit
  limit=$(left 90)
  if sink try_wait_for_keys "$PROTECTED" "$expected" "$limit" '^[op]-' \
    && try_wait_for_keys "$RAW.dlq" "$hostiles" "$(left 30)" '^h-'; then
    passed "$MODE: $expected records on the sink and $hostiles on the dead-letter topic (distinct keys)"
  else
    failed "$MODE: after ${limit}s the sink has $(sink_keys) of $expected keys and the dead-letter topic $(count_distinct_keys "$RAW.dlq" '^h-') of $hostiles (log: $RUNNER_LOG)"
  fi
  local stop_started status=0
  stop_started=$(clock)
  kill -TERM "$RUNNER_PID" 2>/dev/null || true
  # The runner ends within pipeline.shutdown_timeout (20 s) + 10 s whatever the clusters
  # do; 40 s before it counts as hung.
  if try_wait_for 40 runner_gone "$RUNNER_PID"; then
    wait "$RUNNER_PID" || status=$?
    if [ "$status" -eq 0 ] && grep -q '"stopped cleanly' "$RUNNER_LOG"; then
      passed "$MODE: the last runner exited 0 on SIGTERM, $(since "$stop_started") after it"
    else
      failed "$MODE: the last runner exited $status on SIGTERM: $(grep '^error' "$RUNNER_LOG" | tail -1) (log: $RUNNER_LOG)"
    fi
  else
    kill -9 "$RUNNER_PID" 2>/dev/null || true
    failed "$MODE: the last runner still ran 40s after SIGTERM (killed; log: $RUNNER_LOG)"
  fi

  phase "checks"
  check_outputs
  phase ""
}

runner_gone() { ! kill -0 "$1" 2>/dev/null; }

check_outputs() {
  local delivery=$MODE
  say "$MODE: the sink, by key, decrypted with hvac (root token)"
  if sink fields_check "$PROTECTED" "$RUN/expected.tsv" ssn tenant- "$delivery" | tee "$RUN/fields-check.txt"; then
    passed "$MODE: every ordinary and byte-preserving record on the sink ($delivery), /ssn decrypting back, every other byte unchanged"
  else
    failed "$MODE: the sink's records:$(problems "$RUN/fields-check.txt")"
  fi
  # The byte-preserving records on their own, so that their verdict shows apart.
  if sink fields_check "$PROTECTED" "$RUN/precise.tsv" ssn tenant- "$delivery" '^p-' >"$RUN/precise-check.txt"; then
    passed "$MODE: the byte-preserving records ($(head -1 "$RUN/precise.tsv" | cut -f3)) arrived with every byte but /ssn as sent"
  else
    failed "$MODE: the byte-preserving records ($(head -1 "$RUN/precise.tsv" | cut -f3)):$(problems "$RUN/precise-check.txt")"
  fi

  say "$MODE: the dead-letter topic $RAW.dlq (source cluster)"
  if dead_letter_check "$RAW.dlq" "$RUN/hostile.tsv" | tee "$RUN/dead-letter-check.txt"; then
    passed "$MODE: every hostile record dead-lettered as invalid-input with a reason naming its problem, and nothing else"
  else
    failed "$MODE: the dead-letter topic:$(problems "$RUN/dead-letter-check.txt")"
  fi

  say "$MODE: kcat's raw dump of every topic on the sink cluster (read_uncommitted)"
  if ! sink raw_dump >"$RUN/sink.raw"; then
    failed "$MODE: the raw dump of the sink cluster failed"
  fi
  local leaked hostile_on_sink
  leaked=$({ grep -aoE "$SSN" "$RUN/sink.raw" || true; } | sort -u | wc -l)
  hostile_on_sink=$(grep -ac "^$PROTECTED [0-9]* [0-9]* key=h-" "$RUN/sink.raw" || true)
  if [ "$leaked" -eq 0 ] && ! grep -aq '333333333' "$RUN/sink.raw"; then
    passed "$MODE: no SSN in clear on the sink cluster (in $(wc -l <"$RUN/sink.raw") records of all its topics: keys, headers, values)"
  else
    failed "$MODE: $leaked distinct SSNs in clear on the sink cluster, e.g. $(grep -aoE "$SSN" "$RUN/sink.raw" | sort -u | head -3 | tr '\n' ' ')($RUN/sink.raw)"
  fi
  if [ "$hostile_on_sink" -eq 0 ]; then
    passed "$MODE: no hostile record on $PROTECTED (read_uncommitted)"
  else
    failed "$MODE: $hostile_on_sink hostile records reached $PROTECTED: $(grep -a "^$PROTECTED [0-9]* [0-9]* key=h-" "$RUN/sink.raw" | sed 's/ headers=.* value=/ value=/' | head -3 | tr '\n' ' ')"
  fi

  say "$MODE: the runners' logs"
  local panics
  panics=$(grep -l 'panicked at' "$RUN"/runner-*.log || true)
  if [ -z "$panics" ]; then
    passed "$MODE: no 'panicked at' in any runner log"
  else
    failed "$MODE: a runner panicked: $(grep -h 'panicked at' "$RUN"/runner-*.log | head -2 | cut -c1-300)"
  fi
  if grep -aqE "$SSN|333333333" "$RUN"/runner-*.log; then
    failed "$MODE: record contents (an SSN) in a runner log: $(grep -aohE ".{0,80}($SSN|333333333)" "$RUN"/runner-*.log | head -2)"
  else
    passed "$MODE: no SSN in any runner log"
  fi
  if grep -qF -- "$RUNNER_TOKEN" "$RUN"/runner-*.log || grep -qF -- "$VAULT_TOKEN" "$RUN"/runner-*.log; then
    failed "$MODE: a Vault token appears in a runner log"
  else
    passed "$MODE: no Vault token in any runner log"
  fi
}

runs=${#MODES[@]}
for mode in "${MODES[@]}"; do
  run_sequence "$mode" "$runs"
  runs=$((runs - 1))
done

report_checks chaos

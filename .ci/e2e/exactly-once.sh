#!/usr/bin/env bash
# Exactly-once delivery (`[pipeline] delivery = "exactly-once"`) end to end on Apache Kafka
# and OpenBao, source and sink on two clusters. Each batch's outputs for a source partition
# are written in one transaction on the sink cluster (transactional.id
# <source.group_id>.<topic>.<partition>), which also records the partition's next source
# offset in the offsets topic on the sink cluster; downstream consumers read the sink
# with isolation.level=read_committed.
#
# 1. SIGKILL: an application produces 20,000 records, each with a unique marker, at a
#    steady rate while one runner (consumer-group assignment) moves them; the runner is
#    killed with SIGKILL three times, at random moments, and restarted each time. A
#    read_committed consumer on the sink must find every marker exactly once (none
#    missing, none twice), no plaintext, and values that decrypt (hvac) to the originals.
#    A read_uncommitted reader, for contrast, also sees what the killed runners' aborted
#    transactions wrote (reported, not asserted beyond >=). The positions recorded on the
#    sink cluster end at the end of the source topic.
# 2. Zombie fencing: runner A (static assignment: every partition, no group) is running
#    when runner B starts with the same config while records still flow. B's
#    transactional producers fence A's: A must stop within 60 s with exit status 1 and an
#    error that says `fenced`, B goes on, and the sink holds every marker of this phase
#    exactly once.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=20000           # records of the SIGKILL phase
RATE=500          # records per second from the application: 40 s of stream for the kills
KILLS=3
FENCE_N=10000     # records of the fencing phase
FENCE_WAIT=60     # seconds runner A may take to stop once runner B started
SESSION_TIMEOUT_MS=6000
OFFSETS_TOPIC=kafka-transit-offsets # pipeline.offsets_topic's default, on the sink cluster
WORK=$(mktemp -d -t kafka-transit-exactly-once.XXXXXX)
START=$SECONDS
stack_init
start_kafka
start_kafka SINK_BOOTSTRAP
start_openbao

create_topics eos.raw:6 eos.raw.dlq fence.raw:6 fence.raw.dlq
sink create_topics eos.protected:6 fence.protected:6
vault_write transit/keys/eos '{}'
vault_write transit/keys/kafka-transit-offsets '{}'  # signs exactly-once positions (pipeline.offsets_key)

# records PREFIX COUNT: key<TAB>value lines, each record marked with its unique key.
records() {
  python3 - "$1" "$2" <<'PY'
import json, sys
prefix, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    marker = f"{prefix}-{i:05d}"
    value = {"marker": marker, "name": f"PLAINTEXT-NAME-{marker}", "card": f"4111{i:012d}"}
    print(f"{marker}\t{json.dumps(value, separators=(',', ':'))}")
PY
}
records m "$N" >"$WORK/eos.tsv"
records f "$FENCE_N" >"$WORK/fence.tsv"

write_pipeline "$WORK/eos.toml" eos.raw eos.protected encrypt-value eos \
  $'batch_size = 100\ndelivery = "exactly-once"'
source_properties "$WORK/eos.toml" "\"session.timeout.ms\" = \"$SESSION_TIMEOUT_MS\""
write_pipeline "$WORK/fence.toml" fence.raw fence.protected encrypt-value eos \
  $'batch_size = 100\ndelivery = "exactly-once"'
sed -i 's/^group_id = .*/&\nassignment = "static"/' "$WORK/fence.toml"
"$KAFKA_TRANSIT" validate --config "$WORK/eos.toml"
"$KAFKA_TRANSIT" validate --config "$WORK/fence.toml"

# start_runner CONFIG LOG: a runner in the background (JSON logs); its pid in RUNNER_PID.
start_runner() {
  "$KAFKA_TRANSIT" --log-format json run --config "$1" >"$2" 2>&1 &
  RUNNER_PID=$!
  STACK_PIDS+=("$RUNNER_PID")
}
# stop_runner PID LOG: SIGTERM; it must finish, commit and exit 0.
stop_runner() {
  kill -TERM "$1"
  wait "$1" || fail "the runner did not exit 0 on SIGTERM (log: $2)"
  grep -q "stopped cleanly" "$2" || fail "no clean-stop line in $2"
}
# random_delay MIN_MS MAX_MS: seconds with milliseconds, for sleep.
random_delay() {
  local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
  printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# check_exactly_once NAME TOPIC ORIGINALS.tsv SOURCE_TOPIC: reads TOPIC on the sink as a
# downstream consumer does (read_committed) and as one that should not (read_uncommitted);
# every key of ORIGINALS exactly once, no plaintext, values decrypting to the originals;
# the positions recorded for SOURCE_TOPIC (of which ORIGINALS is every record) at its end.
# Sets DELIVERED, DUPLICATES, MISSING and UNCOMMITTED.
check_exactly_once() {
  local name=$1 topic=$2 originals=$3 source_topic=$4
  local committed=$WORK/$name-read-committed.tsv uncommitted=$WORK/$name-read-uncommitted.tsv
  sink read_records "$topic" read_committed >"$committed" || fail "reading $topic (read_committed) failed"
  sink read_records "$topic" read_uncommitted >"$uncommitted" || fail "reading $topic (read_uncommitted) failed"
  if grep -q 'PLAINTEXT-' "$committed" "$uncommitted"; then
    fail "plaintext reached the sink: $(grep -l 'PLAINTEXT-' "$committed" "$uncommitted" | tr '\n' ' ')"
  fi
  if cut -f2 "$committed" "$uncommitted" | grep -v '^vault:v[0-9]*:' | grep -q .; then
    fail "a value on $topic is not a Vault ciphertext ($committed, $uncommitted)"
  fi
  local unexpected examples
  read -r DELIVERED DUPLICATES MISSING unexpected UNCOMMITTED < <(
    python3 - "$originals" "$committed" "$uncommitted" "$WORK/$name-problems.txt" <<'PY'
import collections, sys
originals, committed, uncommitted, problems = sys.argv[1:5]
expected = {line.split("\t", 1)[0] for line in open(originals, encoding="utf-8")}
seen = collections.Counter(line.split("\t", 1)[0] for line in open(committed, encoding="utf-8"))
twice = sorted(k for k, n in seen.items() if n > 1)
missing = sorted(expected - set(seen))
unexpected = sorted(set(seen) - expected)
with open(problems, "w", encoding="utf-8") as out:
    out.write(f"missing e.g. {missing[:5]}; twice e.g. {[(k, seen[k]) for k in twice[:5]]}; "
              f"unexpected e.g. {unexpected[:5]}\n")
print(sum(seen.values()), sum(seen[k] - 1 for k in twice), len(missing), len(unexpected),
      sum(1 for _ in open(uncommitted, encoding="utf-8")))
PY
  )
  [ -n "$UNCOMMITTED" ] || fail "counting the records of $topic failed (see above)"
  examples=$(cat "$WORK/$name-problems.txt")
  say "$topic read_committed: $DELIVERED records, $DUPLICATES duplicates, $MISSING missing; read_uncommitted: $UNCOMMITTED records"
  local logs="records: $committed; runner logs: $WORK/$name-*.log"
  [ "$MISSING" -eq 0 ] || fail "$MISSING of $(wc -l <"$originals") markers missing on $topic (read_committed; $examples; $logs)"
  [ "$DUPLICATES" -eq 0 ] || fail "$DUPLICATES duplicates on $topic (read_committed; $examples; $logs)"
  [ "$unexpected" -eq 0 ] || fail "$unexpected unexpected keys on $topic ($examples)"
  [ "$UNCOMMITTED" -ge "$DELIVERED" ] \
    || fail "read_uncommitted saw $UNCOMMITTED records, fewer than read_committed's $DELIVERED ($uncommitted)"
  decrypt_check eos "$originals" "$committed" || fail "decryption check failed (records: $committed)"
  # Positions: key ["<group_id>","<topic>",<partition>], value {"offset":<next>}.
  sink read_records "$OFFSETS_TOPIC" >"$WORK/$name-positions.tsv"
  python3 - "$WORK/$name-positions.tsv" "$source_topic" "$(wc -l <"$originals")" <<'PY' \
    || fail "positions on the sink cluster ($OFFSETS_TOPIC: $WORK/$name-positions.tsv)"
import json, sys
path, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
last = {}
for line in open(path, encoding="utf-8"):
    key, _, value = line.rstrip("\n").partition("\t")
    group, source_topic, partition = json.loads(key)
    if source_topic == topic and value:
        last[partition] = json.loads(value)["offset"]
assert len(last) == 6, f"positions for {len(last)} of the 6 partitions of {topic}: {last}"
assert sum(last.values()) == total, f"positions {last} sum to {sum(last.values())}, not {total}"
print(f"   positions on the sink cluster: {topic} read to its end, {total} records: {last}")
PY
}

# --- 1. exactly once under SIGKILL ------------------------------------------------------
say "1. exactly once under SIGKILL: one runner (consumer group, session.timeout.ms = $SESSION_TIMEOUT_MS), killed $KILLS times"
phase_start=$SECONDS
# The stream starts once the first runner has its partitions, so the kills land while
# the application is still producing, however slow the machine.
start_runner "$WORK/eos.toml" "$WORK/eos-run-1.log"
wait_for 60 "runner 1's partitions (log: $WORK/eos-run-1.log)" has_partitions "$WORK/eos-run-1.log"
say "the application produces $N records at $RATE/s"
produce_at_rate eos.raw "$WORK/eos.tsv" "$RATE" "$WORK/eos-producer.log"
producer=$PRODUCER_PID
for run in $(seq 1 "$KILLS"); do
  log=$WORK/eos-run-$run.log
  if [ "$run" -gt 1 ]; then
    start_runner "$WORK/eos.toml" "$log"
    # The group gives it the partitions once it has dropped the killed member.
    wait_for 60 "runner $run's partitions (log: $log)" has_partitions "$log"
  fi
  delay=$(random_delay 2000 6000)
  sleep "$delay"
  kill -0 "$RUNNER_PID" 2>/dev/null || fail "runner $run stopped by itself before the kill (log: $log)"
  kill -9 "$RUNNER_PID"
  wait "$RUNNER_PID" 2>/dev/null || true
  committed=$(sink count_distinct_keys eos.protected)
  say "kill $run of $KILLS: SIGKILL ${delay}s after runner $run got its partitions; $committed of $N markers committed on the sink"
  [ "$committed" -lt "$N" ] || fail "every record was committed before kill $run: the kill tested nothing"
done
run=$((KILLS + 1))
log=$WORK/eos-run-$run.log
say "runner $run: restarted, left to finish"
start_runner "$WORK/eos.toml" "$log"
wait "$producer" || fail "the application's producer failed: $(cat "$WORK/eos-producer.log")"
sink wait_for_keys eos.protected "$N" 180 "log: $log"
stop_runner "$RUNNER_PID" "$log"
[ "$(count_distinct_keys eos.raw.dlq)" -eq 0 ] || fail "records were dead-lettered (logs: $WORK/eos-run-*.log)"
check_exactly_once eos eos.protected "$WORK/eos.tsv" eos.raw
SUMMARY_EOS="exactly-once under SIGKILL: $N records, $DELIVERED delivered read_committed, duplicates $DUPLICATES, missing $MISSING, $KILLS kills, $((SECONDS - phase_start))s; read_uncommitted sees $UNCOMMITTED ($((UNCOMMITTED - DELIVERED)) from aborted transactions)"
say "$SUMMARY_EOS"

# --- 2. zombie fencing ------------------------------------------------------------------
say "2. zombie fencing: runner A (static assignment) runs; runner B starts with the same config"
phase_start=$SECONDS
start_runner "$WORK/fence.toml" "$WORK/fence-a.log"
runner_a=$RUNNER_PID
wait_for 60 "runner A's partitions (log: $WORK/fence-a.log)" has_partitions "$WORK/fence-a.log"
say "the application produces $FENCE_N records at $RATE/s"
produce_at_rate fence.raw "$WORK/fence.tsv" "$RATE" "$WORK/fence-producer.log"
producer=$PRODUCER_PID
sink wait_for_keys fence.protected 1500 60 "log: $WORK/fence-a.log"
kill -0 "$runner_a" 2>/dev/null || fail "runner A stopped before runner B started (log: $WORK/fence-a.log)"
b_started=$(clock)
start_runner "$WORK/fence.toml" "$WORK/fence-b.log"
runner_b=$RUNNER_PID
deadline=$((SECONDS + FENCE_WAIT))
while kill -0 "$runner_a" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] \
    || fail "runner A still runs ${FENCE_WAIT}s after runner B started: not fenced (logs: $WORK/fence-a.log, $WORK/fence-b.log)"
  sleep 0.2
done
fenced_after=$(since "$b_started")
status=0
wait "$runner_a" || status=$?
[ "$status" -eq 1 ] || fail "runner A exited with status $status, expected 1 (log: $WORK/fence-a.log)"
# The runner's own last words (not only librdkafka's log lines) must say so.
fenced_error=$(grep '^error:' "$WORK/fence-a.log" | tail -1)
grep -qi 'fenced' <<<"$fenced_error" \
  || fail "runner A exited 1 but its error does not say it was fenced: ${fenced_error:-none} ($WORK/fence-a.log)"
kill -0 "$runner_b" 2>/dev/null || fail "runner B stopped too (log: $WORK/fence-b.log)"
say "runner A stopped with status 1 ${fenced_after} after runner B started: ${fenced_error:0:200}..."
wait_for 60 "runner B's partitions (log: $WORK/fence-b.log)" has_partitions "$WORK/fence-b.log"
wait "$producer" || fail "the application's producer failed: $(cat "$WORK/fence-producer.log")"
sink wait_for_keys fence.protected "$FENCE_N" 180 "log: $WORK/fence-b.log"
stop_runner "$runner_b" "$WORK/fence-b.log"
[ "$(count_distinct_keys fence.raw.dlq)" -eq 0 ] || fail "records were dead-lettered (logs: $WORK/fence-*.log)"
check_exactly_once fence fence.protected "$WORK/fence.tsv" fence.raw
SUMMARY_FENCE="zombie fencing: $FENCE_N records, $DELIVERED delivered read_committed, duplicates $DUPLICATES, missing $MISSING, runner A fenced (exit 1) ${fenced_after} after runner B started, $((SECONDS - phase_start))s; read_uncommitted sees $UNCOMMITTED ($((UNCOMMITTED - DELIVERED)) from runner A's aborted transactions)"
say "$SUMMARY_FENCE"

if grep -q -- "$VAULT_TOKEN" "$WORK"/*.log; then fail "the Vault token appears in a runner log"; fi
if grep -q 'PLAINTEXT-' "$WORK"/eos-run-*.log "$WORK"/fence-?.log; then fail "record contents appear in a runner log"; fi
printf '%s\n' "$SUMMARY_EOS" "$SUMMARY_FENCE"
say "exactly-once: passed in $((SECONDS - START))s (logs: $WORK)"

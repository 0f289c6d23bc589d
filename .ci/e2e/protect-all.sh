#!/usr/bin/env bash
# Everything protected (issue 22): records whose keys, values and headers carry personal
# data (names, emails, SSNs, user ids; in header values and in some header names; repeated,
# empty and valueless headers; binary and empty values; records without a key; tombstones)
# go through the release runner on Apache Kafka and OpenBao with every format 3 option of
# a whole-value policy on:
#
#   record_keys = "encrypt" (record_keys_key: a derived, convergent transit key),
#   headers = "seal", keep_headers = ["traceparent"], bind = ["stream", "key"]
#
# once through envelope-seal (opened by envelope-open) and once through encrypt-value
# (decrypt-value), both runners of a pair reading and writing at once. The sink topics
# are compacted, where Kafka takes no record without a key: the protecting runners
# dead-letter those (sink-rejected, naming cleanup.policy) and go on. Then, for each:
#   1. a raw dump of the sink topic (kcat: keys, header names and values, values;
#      read_uncommitted) holds none of the personal tokens, while the same dump of the
#      source topic holds every one (so the search works);
#   2. every record of a source key has one sink key (not the source's), on one partition,
#      in source order, and no two source keys share one; null keys stay null;
#   3. the opening pipeline, with the opening options (record_keys_key,
#      require_binding = ["stream", "key"]), gives back every record byte-identical: key,
#      value, headers in order with repeats and valueless ones (a tombstone keeps its kept
#      headers only: its sealed ones have no value to travel in);
#   4. a record forged by putting Alice's value under Bob's sink key (on Bob's partition),
#      and a copy of Alice's record produced onto another topic that the opening runner
#      reads, are dead-lettered by it as invalid-input, "message authentication failed",
#      and reach nothing downstream;
#   5. the Java, Go and Python format 3 readers read every sink record back as the source
#      (the Java key and value deserializers, Go's Reader.ReadRecord, Python's RecordReader)
#      and refuse both forged records as failing authentication;
#   6. the sink topic is compacted (cleanup.policy = compact; compaction held back by
#      min.compaction.lag.ms until the checks above are done, then allowed, with small
#      segments and min.cleanable.dirty.ratio): once the cleaner ran, one record per key is
#      left, the last its source key had (a tombstone for a deleted customer);
#   7. no personal token in any runner log, no panic, and every runner exits 0 on SIGTERM.
# Each check prints PASS or FAIL and the suite goes on; the timings per phase and every
# verdict are printed at the end, and the suite exits 1 if any check failed.
# PROTECT_ALL_COUNT (default 2000) is the number of source records.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"
source "$REPO_ROOT/demos/lib/checks.sh"

COUNT=${PROTECT_ALL_COUNT:-2000}
WORK=$STACK_LOGS/protect-all # removed with the broker's data when every check passed
mkdir -p "$WORK"
RAW=protect-all.raw
# protecting policy, opening policy, sink topic
PAIRS=("envelope-seal envelope-open protect-all.sealed" "encrypt-value decrypt-value protect-all.encrypted")
PROTECT_CONFIG='key = "customers"
record_keys = "encrypt"
record_keys_key = "customer-ids"
headers = "seal"
keep_headers = ["traceparent"]
bind = ["stream", "key"]'
OPEN_CONFIG='key = "customers"
record_keys_key = "customer-ids"
require_binding = ["stream", "key"]'
# Small segments and any dirt make the cleaner compact within seconds, once
# min.compaction.lag.ms lets it (the checks before compaction need every record).
COMPACT='cleanup.policy=compact,segment.ms=1000,min.cleanable.dirty.ratio=0.01,min.compaction.lag.ms=3600000'
PA() { python3 "$REPO_ROOT/demos/lib/protect_all.py" "$@"; }

phase "start: Apache Kafka, OpenBao, keys, tokens, topics, four runners"
stack_init
start_kafka
start_openbao
vault_write transit/keys/customers '{}'
vault_write transit/keys/customer-ids '{"derived": true, "convergent_encryption": true}'
# The protecting runners may only encrypt (and get data keys); the opening runners and the
# readers may only decrypt.
acl() { python3 -c 'import json, sys; print(json.dumps({"policy": "\n".join(
  f"path \"transit/{p}\" {{ capabilities = [\"update\"] }}" for p in sys.argv[1:])}))' "$@"; }
vault_write sys/policies/acl/protect-all-protect \
  "$(acl datakey/plaintext/customers encrypt/customers encrypt/customer-ids)"
vault_write sys/policies/acl/protect-all-open "$(acl decrypt/customers decrypt/customer-ids)"
PROTECT_TOKEN=$(vault_token protect-all-protect)
OPEN_TOKEN=$(vault_token protect-all-open)
export PROTECT_TOKEN OPEN_TOKEN

topics=("$RAW:3")
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  topics+=("$sink:3:$COMPACT" "$sink.copy:1" "$sink.opened:3" "$sink.dlq:1" "$RAW.$protector.dlq:1")
done
create_topics "${topics[@]}"
PA make "$WORK" "$COUNT" "$RAW"

declare -A RUNNER_PID RUNNER_LOG
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  PIPELINE_TOKEN_ENV=PROTECT_TOKEN pipeline_file "$WORK/$protector.toml" "$protector" "$sink" \
    "$RAW.$protector.dlq" "$PROTECT_CONFIG" "$RAW"
  # The opening runner reads the sink topic and the topic forged copies go to.
  PIPELINE_TOKEN_ENV=OPEN_TOKEN pipeline_file "$WORK/$opener.toml" "$opener" "$sink.opened" \
    "$sink.dlq" "$OPEN_CONFIG" "$sink" "$sink.copy"
  for policy in "$protector" "$opener"; do
    RUNNER_LOG[$policy]=$WORK/$policy.log
    start_pipeline "$WORK/$policy.toml" "${RUNNER_LOG[$policy]}"
    RUNNER_PID[$policy]=$PIPELINE_PID
  done
done

phase "protect and open $COUNT records"
record_file produce "$WORK/source.jsonl" >/dev/null \
  || fail "the source records could not be produced"
# The sink topics are compacted, so the records without a key cannot go there (Kafka
# refuses them): the protecting runners dead-letter them, and the rest arrive.
KEYLESS=$(grep -c '"key": null' "$WORK/source.jsonl" || true)
KEYED=$((COUNT - KEYLESS))
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  if try_wait_for_records "$sink" "$KEYED" 120 && try_wait_for_records "$sink.opened" "$KEYED" 60; then
    passed "$protector: the $KEYED records with a key on $sink, and $opener gave $KEYED back on $sink.opened"
  else
    failed "$protector: $(record_file count "$sink") of $KEYED records on $sink, $(record_file count "$sink.opened") opened (logs: ${RUNNER_LOG[$protector]}, ${RUNNER_LOG[$opener]})"
  fi
  try_wait_for_records "$RAW.$protector.dlq" "$KEYLESS" 30 || true
  record_file dump "$RAW.$protector.dlq" >"$WORK/$protector.dlq.jsonl"
  check_with "$protector: the $KEYLESS records without a key dead-lettered (sink-rejected: the sink topic is compacted), nothing else" \
    "$WORK/$protector-keyless.txt" PA keyless "$WORK/source.jsonl" "$WORK/$protector.dlq.jsonl"
done

phase "the sink topics as their operator sees them"
raw_dump "$RAW" >"$WORK/source.raw"
check_with "the raw dump of $RAW holds every personal token (the search works)" "$WORK/source-leaks.txt" \
  PA leaks "$WORK/tokens.txt" "$WORK/source.raw" --all
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  raw_dump "$sink" >"$WORK/$sink.raw"
  record_file dump "$sink" read_uncommitted >"$WORK/$sink.jsonl"
  say "$sink, the first record as kcat shows it (cut at 300 bytes):"
  head -c 300 "$WORK/$sink.raw" | tr -c '[:print:]\n' '.'
  echo
  check_with "$protector: no personal token in the raw dump of $sink (keys, header names and values, values)" \
    "$WORK/$sink-leaks.txt" PA leaks "$WORK/tokens.txt" "$WORK/$sink.raw"
  check_with "$protector: one sink key and one partition per source key, in source order" \
    "$WORK/$sink-keys.txt" PA keys "$WORK/source.jsonl" "$WORK/$sink.jsonl"
done

phase "the opening pipelines give every record back"
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  record_file dump "$sink.opened" >"$WORK/$sink.opened.jsonl"
  check_with "$opener: every record back byte-identical (key, value, headers: order, repeats, valueless)" \
    "$WORK/$sink-opened.txt" PA opened "$WORK/source.jsonl" "$WORK/$sink.opened.jsonl"
done

phase "forged records: a value under another key, a copy in another topic"
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  mkdir -p "$WORK/$sink"
  PA forge "$KAFKA_BOOTSTRAP" "$WORK/source.jsonl" "$WORK/$sink.jsonl" "$sink.copy" "$WORK/$sink" \
    || failed "$protector: the forged records could not be made"
done
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  if try_wait_for_records "$sink.dlq" 2 60; then
    check_with "$opener: both forged records dead-lettered as invalid-input, \"message authentication failed\"" \
      "$WORK/$sink-dead-letters.txt" dead_letter_check "$sink.dlq" "$WORK/$sink/forged.tsv"
  else
    failed "$opener: $(record_file count "$sink.dlq") of 2 forged records dead-lettered after 60s (log: ${RUNNER_LOG[$opener]})"
  fi
  opened=$(record_file count "$sink.opened")
  if [ "$opened" -eq "$KEYED" ]; then
    passed "$opener: no forged record reached $sink.opened ($opened records, as before)"
  else
    failed "$opener: $sink.opened has $opened records, expected $KEYED: a forged one got through?"
  fi
done

phase "the Java, Go and Python readers"
cat "$WORK"/protect-all.*/readers.jsonl >"$WORK/readers.jsonl"
lines=$(wc -l <"$WORK/readers.jsonl")
say "the readers read $lines sink records (envelope-seal's and encrypt-value's) and the forged ones, with the opening token"
export KAFKA_TRANSIT_E2E_RECORDS=$WORK/readers.jsonl
started=$(clock)
if VAULT_TOKEN=$OPEN_TOKEN python3 "$REPO_ROOT/demos/python/records_check.py" "$WORK/readers.jsonl" \
  >"$WORK/python-reader.txt" 2>&1; then
  passed "Python RecordReader: $(head -1 "$WORK/python-reader.txt") ($(since "$started"))"
else
  failed "Python RecordReader: $(head -1 "$WORK/python-reader.txt"):$(problems "$WORK/python-reader.txt") $(tail -2 "$WORK/python-reader.txt")"
fi
started=$(clock)
if (cd "$REPO_ROOT/clients/go" && VAULT_TOKEN=$OPEN_TOKEN go test -count=1 -run '^TestRecordsFile$' -v . \
  >"$WORK/go-reader.txt" 2>&1) && grep -q 'go reader:' "$WORK/go-reader.txt"; then
  passed "Go Reader.ReadRecord: $(grep -o 'go reader:.*' "$WORK/go-reader.txt") ($(since "$started"))"
else
  failed "Go Reader.ReadRecord: $(grep -E -- '--- (FAIL|SKIP)|records_file_test' "$WORK/go-reader.txt" | head -5 | tr '\n' ' ')(log: $WORK/go-reader.txt)"
fi
started=$(clock)
java_output="$REPO_ROOT/clients/java/target/failsafe-reports/io.kafkatransit.client.RecordsFileIT-output.txt"
rm -f "$java_output"
if (cd "$REPO_ROOT/clients/java" && VAULT_TOKEN=$OPEN_TOKEN mvn -q -B -Dstyle.color=never verify \
  -Dtest=NoUnitTestsHere -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=RecordsFileIT \
  -Dfailsafe.failIfNoSpecifiedTests=false >"$WORK/java-reader.txt" 2>&1) && grep -q '^java reader:' "$java_output"; then
  passed "Java KafkaTransitKeyDeserializer and KafkaTransitDeserializer: $(grep -o 'java reader:.*' "$java_output") ($(since "$started"))"
else
  failed "Java deserializers: $(grep -hE 'problems|java reader|ERROR' "$WORK/java-reader.txt" "$java_output" 2>/dev/null | head -3 | cut -c1-300 | tr '\n' ' ')(log: $WORK/java-reader.txt)"
fi

phase "compaction of the sink topics"
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  topic_config "$sink" min.compaction.lag.ms=0
done
sleep 2 # past segment.ms, so that the next record rolls each partition's segment
sinks=()
for pair in "${PAIRS[@]}"; do read -r protector opener sink <<<"$pair"; sinks+=("$sink"); done
PA roll "$KAFKA_BOOTSTRAP" "$RAW" "${sinks[@]}" || failed "the segments could not be rolled"
for pair in "${PAIRS[@]}"; do
  read -r protector opener sink <<<"$pair"
  started=$(clock)
  compacted() { record_file dump "$sink" >"$WORK/$sink.compacted.jsonl" && PA compacted "$WORK/source.jsonl" "$WORK/$sink.jsonl" "$WORK/$sink.compacted.jsonl"; }
  if try_wait_for 150 compacted; then
    passed "$protector: compacted $sink keeps one record per key, the key's last: $(compacted | head -1 | sed 's/^ *//') (cleaned within $(since "$started"))"
  else
    compacted >"$WORK/$sink-compacted.txt" 2>&1 || true
    failed "$protector: $sink after 150s:$(head -1 "$WORK/$sink-compacted.txt")$(problems "$WORK/$sink-compacted.txt")"
  fi
done

phase "the runners: logs and SIGTERM"
for policy in "${!RUNNER_PID[@]}"; do
  started=$(clock)
  if stop_pipeline "${RUNNER_PID[$policy]}" && grep -q '"stopped cleanly' "${RUNNER_LOG[$policy]}"; then
    passed "$policy: exited 0 on SIGTERM within $(since "$started")"
  else
    failed "$policy: did not stop cleanly on SIGTERM (log: ${RUNNER_LOG[$policy]})"
  fi
done
cat "${RUNNER_LOG[@]}" >"$WORK/runners.log"
check_with "no personal token in any runner log" "$WORK/log-leaks.txt" PA leaks "$WORK/tokens.txt" "$WORK/runners.log"
if grep -q 'panicked at' "$WORK/runners.log"; then
  failed "a runner panicked: $(grep -h 'panicked at' "$WORK/runners.log" | head -2 | cut -c1-300)"
else
  passed "no 'panicked at' in any runner log"
fi

report_checks protect-all

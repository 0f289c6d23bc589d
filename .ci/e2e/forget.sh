#!/usr/bin/env bash
# Forgetting data subjects (issue 25, docs/forgetting.md), on Apache Kafka and OpenBao:
#
#   1. 10,000 records of 1,000 customers (keyed by the customer's id, a JSON value with
#      their name, e-mail and id and a per-record counter, a few headers without personal
#      data) are sealed per data subject by envelope-seal (subject = "{key}", a transit key
#      per customer named by Vault's HMAC, record keys encrypted, bound to stream and key);
#   2. while that runner runs, `kafka-transit forget` forgets 10 customers (the id on
#      standard input), each deleting its subject's key; again for one: no key is left;
#      then 10 more records, one of a forgotten customer: the sealing runner dead-letters
#      it ("forgotten") and seals the other 9;
#   3. envelope-open (subject_keys, require_binding = ["stream", "key"]) restores every
#      record of the 990 other customers byte-identical (key, value, headers) and
#      dead-letters each of the forgotten customers' 100 records, "subject forgotten",
#      and nothing else;
#   4. the Python, Go and Java readers, over a dump of the sealed topic taken before the
#      forget (a copy in a lake or a backup), open the 9,900 records of the others
#      byte-identical (key and value; headers: the source's and the runner's stamps) and
#      report exactly the 100 of the forgotten ones "subject forgotten";
#   5. every sealed record names its subject's key (Vault's HMAC of the id, as
#      names/src/lib.rs names it, and as forget printed it); OpenBao's transit/keys lists
#      every other customer's key and none of the forgotten ones' (each 404); the raw
#      sealed topic holds no customer's id, name or e-mail in clear (keys, values,
#      headers), nor does any runner log or forget's output;
#   6. both runners exit 0 on SIGTERM.
# The runners' tokens hold what `kafka-transit vault-policy` prints for their files (which
# must include record_keys_key); forget's token holds update on the HMAC key and read,
# update and delete on the subjects' keys, and the one docs/forgetting.md words must be
# allowed as much (asked of OpenBao with sys/capabilities). Each check prints PASS or FAIL
# and the suite goes on; the suite exits 1 if any check failed. About 2.5 minutes once
# built, most of it the three readers.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"
source "$REPO_ROOT/demos/lib/checks.sh"

COUNT=10000
SUBJECTS=1000
FORGET=10
PER=$((COUNT / SUBJECTS))
WORK=$STACK_LOGS/forget # removed with the broker's data when every check passed
mkdir -p "$WORK"
RAW=forget.raw SEALED=forget.sealed OPENED=forget.opened
SEAL_DLQ=forget.raw.dlq OPEN_DLQ=forget.sealed.dlq
FC() { python3 "$REPO_ROOT/demos/lib/forget_check.py" "$@"; }
LEAKS() { FC leaks "$@"; }
# vault_api METHOD PATH [JSON]: OpenBao's answer with the root token.
vault_api() {
  curl -sf ${VAULT_CACERT:+--cacert "$VAULT_CACERT"} -X "$1" -H "X-Vault-Token: $VAULT_TOKEN" \
    ${3:+-d "$3"} "$VAULT_ADDR/v1/$2"
}
hcl_policy() { python3 -c 'import json, sys; print(json.dumps({"policy": sys.stdin.read()}))'; }
count_of() { record_file count "$1" 2>/dev/null || echo 0; }

phase "start: Apache Kafka, OpenBao, keys, tokens, topics, the sealing runner"
stack_init
start_kafka
start_openbao
vault_write transit/keys/subject-ids '{}'
vault_write transit/keys/customer-ids '{"derived": true, "convergent_encryption": true}'
create_topics "$RAW:3" "$SEALED:3" "$OPENED:3" "$SEAL_DLQ:1" "$OPEN_DLQ:1"
FC make "$WORK" "$RAW" "$COUNT" "$SUBJECTS" "$FORGET"
mapfile -t FORGOTTEN <"$WORK/forgotten.txt"

PIPELINE_TOKEN_ENV=SEAL_TOKEN pipeline_file "$WORK/seal.toml" envelope-seal "$SEALED" "$SEAL_DLQ" \
  'subject = "{key}"
subject_keys = "customers-"
subject_hmac_key = "subject-ids"
bind = ["stream", "key"]
record_keys = "encrypt"
record_keys_key = "customer-ids"' "$RAW"
printf '\n[forget]\ngrace = "2s"\n' >>"$WORK/seal.toml"
PIPELINE_TOKEN_ENV=OPEN_TOKEN pipeline_file "$WORK/open.toml" envelope-open "$OPENED" "$OPEN_DLQ" \
  'subject_keys = "customers-"
record_keys_key = "customer-ids"
require_binding = ["stream", "key"]' "$SEALED"
printf '\n[forget]\n' >>"$WORK/open.toml"

# The runners' tokens: what vault-policy derives from their files. Both runners take
# record keys encrypted under customer-ids: vault-policy must grant that too (if it does
# not, the check fails and the path is added here, so that the rest can run).
for runner in "seal encrypt" "open decrypt"; do
  read -r name operation <<<"$runner"
  "$KAFKA_TRANSIT" vault-policy --config "$WORK/$name.toml" >"$WORK/$name.hcl"
  if grep -q "^path \"transit/$operation/customer-ids\"" "$WORK/$name.hcl"; then
    passed "vault-policy of the envelope-$name pipeline: $(grep -c '^path' "$WORK/$name.hcl") paths, $operation on the subjects' keys (transit/*/customers-*) and on record_keys_key customer-ids"
  else
    failed "vault-policy of the envelope-$name pipeline (subject_keys, record_keys_key = \"customer-ids\") does not grant $operation on transit/$operation/customer-ids, which the runner needs for the record keys ($WORK/$name.hcl): added by hand here"
    printf '\npath "transit/%s/customer-ids" {\n  capabilities = ["update"]\n}\n' "$operation" >>"$WORK/$name.hcl"
  fi
  vault_write "sys/policies/acl/forget-e2e-$name" "$(hcl_policy <"$WORK/$name.hcl")"
done
# forget's token, as docs/forgetting.md words it: update on the HMAC key; read, update and
# delete on the subjects' keys ("customers-*" covers each key's /config: deletion_allowed).
vault_write sys/policies/acl/forget-e2e-forget "$(hcl_policy <<'HCL'
path "transit/hmac/subject-ids" { capabilities = ["update"] }
path "transit/keys/customers-*" { capabilities = ["read", "update", "delete"] }
HCL
)"
SEAL_TOKEN=$(vault_token forget-e2e-seal)
OPEN_TOKEN=$(vault_token forget-e2e-open)
FORGET_TOKEN=$(vault_token forget-e2e-forget)
export SEAL_TOKEN OPEN_TOKEN
some_key=customers-$(printf '%048d' 0)
capabilities_of() { # TOKEN PATH: the token's capabilities on PATH, as OpenBao says
  vault_api POST sys/capabilities "{\"token\": \"$1\", \"paths\": [\"$2\"]}" \
    | python3 -c 'import json, sys; print(",".join(json.load(sys.stdin)["data"]["capabilities"]))'
}
documented=$(capabilities_of "$FORGET_TOKEN" "transit/keys/$some_key/config")
if [[ ",$documented," == *,update,* ]]; then
  passed "the forget token docs/forgetting.md describes may update transit/keys/<subject key>/config ($documented)"
else
  failed "the forget token docs/forgetting.md describes may not update transit/keys/<subject key>/config: OpenBao says [$documented]"
fi

record_file produce "$WORK/source.jsonl" >/dev/null || fail "the source records could not be produced"
SEAL_LOG=$WORK/seal.log OPEN_LOG=$WORK/open.log
start_pipeline "$WORK/seal.toml" "$SEAL_LOG"
SEAL_PID=$PIPELINE_PID

phase "seal $COUNT records of $SUBJECTS customers, a key each"
started=$(clock)
if try_wait_for_records "$SEALED" "$COUNT" 240; then
  passed "envelope-seal: the $COUNT records sealed on $SEALED, under $SUBJECTS subjects' keys ($(since "$started"))"
else
  failed "envelope-seal: $(count_of "$SEALED") of $COUNT records sealed after 240s (log: $SEAL_LOG)"
fi
# A copy of the sealed topic as a lake or a backup holds it, before anyone is forgotten.
record_file dump "$SEALED" >"$WORK/sealed-before.jsonl"
check_with "the readers' file: every sealed record, and what a reader must make of it" "$WORK/readers-file.txt" \
  FC readers "$WORK" "$WORK/sealed-before.jsonl" "$WORK/readers.jsonl"

phase "forget $FORGET customers while the sealing runner runs"
# In parallel (each waits its grace of 2 s); the id goes in on standard input.
declare -A FORGET_PID
for id in "${FORGOTTEN[@]}"; do
  printf '%s\n' "$id" | SEAL_TOKEN=$FORGET_TOKEN "$KAFKA_TRANSIT" forget --subject - --config "$WORK/seal.toml" \
    >"$WORK/forget-$id.out" 2>"$WORK/forget-$id.err" &
  FORGET_PID[$id]=$!
done
forgot=0
for id in "${FORGOTTEN[@]}"; do
  if wait "${FORGET_PID[$id]}" && grep -q '^forgot a data subject: deleted transit key customers-[0-9a-f]\{48\} (1 version(s): \[1\])' "$WORK/forget-$id.out"; then
    forgot=$((forgot + 1))
  else
    failed "forget of one customer: $(cat "$WORK/forget-$id.out" "$WORK/forget-$id.err" | tail -3 | cut -c1-300)"
  fi
done
[ "$forgot" -ne "$FORGET" ] || passed "forget: $FORGET customers forgotten, each \"deleted transit key customers-... (1 version(s): [1])\", e.g. $(cut -c1-200 "$WORK/forget-${FORGOTTEN[0]}.out")"
again=${FORGOTTEN[1]}
if printf '%s\n' "$again" | SEAL_TOKEN=$FORGET_TOKEN "$KAFKA_TRANSIT" forget --subject - --config "$WORK/seal.toml" \
  >"$WORK/forget-again.out" 2>"$WORK/forget-again.err" \
  && grep -q '^forgot a data subject: no transit key customers-[0-9a-f]\{48\} in Vault' "$WORK/forget-again.out"; then
  passed "forget again of the same customer: $(cut -c1-130 "$WORK/forget-again.out")..."
else
  failed "forget again: $(cat "$WORK/forget-again.out" "$WORK/forget-again.err" | tail -3 | cut -c1-300)"
fi
key_again=$(grep -o 'customers-[0-9a-f]*' "$WORK/forget-again.out" | head -1 || true)
if [ -n "$key_again" ] && grep -q "key $key_again " "$WORK/forget-$again.out"; then
  passed "forget again named the same key as the first time ($key_again)"
else
  failed "forget again named $key_again, the first time: $(cut -c1-200 "$WORK/forget-$again.out")"
fi
cat "$WORK"/forget-*.out "$WORK"/forget-*.err >"$WORK/forget-outputs.txt"
if grep -qF -f "$WORK/subjects.txt" "$WORK/forget-outputs.txt"; then
  failed "forget printed a customer's id: $(grep -oF -f "$WORK/subjects.txt" "$WORK/forget-outputs.txt" | head -3 | tr '\n' ' ')"
else
  passed "no customer id in forget's output (standard output and error of the $((FORGET + 1)) runs)"
fi

phase "10 more records, one of a forgotten customer, to the running sealing runner"
record_file produce "$WORK/late.jsonl" >/dev/null || fail "the late records could not be produced"
LATE_SEALED=$((COUNT + 9))
try_wait_for_records "$SEALED" "$LATE_SEALED" 60 || true
try_wait_for_records "$SEAL_DLQ" 1 30 || true
sleep 2 # nothing more comes
sealed_now=$(count_of "$SEALED")
if [ "$sealed_now" -eq "$LATE_SEALED" ]; then
  passed "envelope-seal sealed the 9 late records of other customers ($SEALED: $sealed_now records)"
else
  failed "$SEALED holds $sealed_now records, expected $LATE_SEALED (log: $SEAL_LOG)"
fi
record_file dump "$SEAL_DLQ" >"$WORK/seal-dlq.jsonl"
check_with "envelope-seal refused to seal the forgotten customer's late record: dead-lettered, \"forgotten\", nothing else" \
  "$WORK/seal-dlq.txt" FC sealing-dead-letters "$WORK" "$WORK/seal-dlq.jsonl"
kill -0 "$SEAL_PID" 2>/dev/null && passed "the sealing runner still runs" || failed "the sealing runner stopped (log: $SEAL_LOG)"

phase "envelope-open: the others restored, the forgotten dead-lettered"
start_pipeline "$WORK/open.toml" "$OPEN_LOG"
OPEN_PID=$PIPELINE_PID
started=$(clock)
WANT_OPENED=$((LATE_SEALED - FORGET * PER)) WANT_DEAD=$((FORGET * PER))
try_wait_for_records "$OPENED" "$WANT_OPENED" 180 || true
try_wait_for_records "$OPEN_DLQ" "$WANT_DEAD" 60 || true
took=$(since "$started")
sleep 2 # nothing more comes
opened_now=$(count_of "$OPENED") dead_now=$(count_of "$OPEN_DLQ")
if [ "$opened_now" -eq "$WANT_OPENED" ] && [ "$dead_now" -eq "$WANT_DEAD" ]; then
  passed "envelope-open: $opened_now records on $OPENED, $dead_now dead-lettered on $OPEN_DLQ ($took)"
else
  failed "envelope-open: $opened_now records on $OPENED (expected $WANT_OPENED), $dead_now on $OPEN_DLQ (expected $WANT_DEAD) (log: $OPEN_LOG)"
fi
record_file dump "$SEALED" >"$WORK/sealed.jsonl"
record_file dump "$OPENED" >"$WORK/opened.jsonl"
record_file dump "$OPEN_DLQ" >"$WORK/open-dlq.jsonl"
check_with "envelope-open: every record of the other customers byte-identical to its source (key, value, headers); each of the forgotten customers' records dead-lettered \"subject forgotten\", nothing else" \
  "$WORK/opened.txt" FC opened "$WORK" "$WORK/sealed.jsonl" "$WORK/opened.jsonl" "$WORK/open-dlq.jsonl"
check_with "envelope-open: each dead letter's reason starts \"subject forgotten\" (docs/forgetting.md)" \
  "$WORK/open-dlq-reasons.txt" FC reasons-start "$WORK/open-dlq.jsonl" "subject forgotten"

phase "the Python, Go and Java readers over the copy taken before the forget"
export KAFKA_TRANSIT_E2E_RECORDS=$WORK/readers.jsonl KAFKA_TRANSIT_SUBJECT_KEYS=customers-
WANT_READ=$((COUNT - FORGET * PER))
# reader_verdict NAME SUMMARY_LINE OUTPUT: the summary names WANT_READ records read back and
# the output has exactly the forgotten customers' lines as "subject forgotten".
reader_verdict() {
  local name=$1 summary=$2 output=$3
  if ! grep -q "^[a-z]* reader: $WANT_READ records read back byte-identical" <<<"$summary"; then
    failed "$name: not $WANT_READ records read back: ${summary:-no summary} (log: $output)"
  elif FC reader-forgotten "$KAFKA_TRANSIT_E2E_RECORDS" "$output" >"$output.forgotten" 2>&1; then
    passed "$name: $summary; $(sed 's/^ *//' "$output.forgotten" | head -1)"
  else
    failed "$name: $(head -1 "$output.forgotten"):$(problems "$output.forgotten")"
  fi
}
started=$(clock)
VAULT_TOKEN=$OPEN_TOKEN python3 "$REPO_ROOT/demos/python/records_check.py" "$KAFKA_TRANSIT_E2E_RECORDS" \
  --subject-keys customers- >"$WORK/python-reader.txt" 2>&1 || true
reader_verdict "Python RecordReader ($(since "$started"))" "$(grep -m1 '^python reader:' "$WORK/python-reader.txt" || true)" \
  "$WORK/python-reader.txt"
if grep -q PROBLEM "$WORK/python-reader.txt"; then failed "Python RecordReader:$(problems "$WORK/python-reader.txt")"; fi
started=$(clock)
VAULT_TOKEN=$OPEN_TOKEN python3 "$REPO_ROOT/demos/python/envelope_decrypt.py" open-file --in "$WORK/sealed-before.jsonl" \
  --out "$WORK/python-open-file.jsonl" --subject-keys customers- --record-keys-key customer-ids \
  --require-binding stream key >"$WORK/python-open-file.txt" 2>&1 || true
check_with "Python envelope_decrypt.py open-file: $(grep -o '[0-9]* opened, .* otherwise' "$WORK/python-open-file.txt" | head -1) ($(since "$started"))" \
  "$WORK/python-open-file-check.txt" FC open-file "$WORK" "$WORK/python-open-file.jsonl"
started=$(clock)
(cd "$REPO_ROOT/clients/go" && VAULT_TOKEN=$OPEN_TOKEN go test -count=1 -run '^TestRecordsFile$' -v . \
  >"$WORK/go-reader.txt" 2>&1) || true
if grep -q -- '--- PASS: TestRecordsFile' "$WORK/go-reader.txt"; then
  reader_verdict "Go Reader.ReadRecord ($(since "$started"))" "$(grep -o 'go reader:.*' "$WORK/go-reader.txt" | head -1)" \
    "$WORK/go-reader.txt"
else
  failed "Go Reader.ReadRecord: $(grep -E -- '--- (FAIL|SKIP)|records_file_test|go reader' "$WORK/go-reader.txt" | head -5 | cut -c1-300 | tr '\n' ' ')(log: $WORK/go-reader.txt)"
fi
started=$(clock)
java_output="$REPO_ROOT/clients/java/target/failsafe-reports/io.kafkatransit.client.RecordsFileIT-output.txt"
rm -f "$java_output"
if (cd "$REPO_ROOT/clients/java" && VAULT_TOKEN=$OPEN_TOKEN mvn -q -B -Dstyle.color=never verify \
  -Dtest=NoUnitTestsHere -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=RecordsFileIT \
  -Dfailsafe.failIfNoSpecifiedTests=false >"$WORK/java-reader.txt" 2>&1) && [ -f "$java_output" ]; then
  reader_verdict "Java KafkaTransitKeyDeserializer and KafkaTransitDeserializer ($(since "$started"))" \
    "$(grep -m1 '^java reader:' "$java_output" || true)" "$java_output"
else
  failed "Java deserializers: $(grep -hE 'problems|java reader|ERROR' "$WORK/java-reader.txt" "$java_output" 2>/dev/null | head -3 | cut -c1-300 | tr '\n' ' ')(log: $WORK/java-reader.txt)"
fi

phase "what is left: OpenBao's keys, the sealed topic, the logs"
# Vault's HMAC of every customer's id, 250 a request (OpenBao takes at most 1000 JSON
# strings in one).
: >"$WORK/hmacs.jsonl"
while read -r request; do
  vault_api POST transit/hmac/subject-ids "$request" >>"$WORK/hmacs.jsonl" || failed "Vault's HMAC of the customers' ids"
  echo >>"$WORK/hmacs.jsonl"
done < <(FC hmac-requests "$WORK" 250)
if FC key-names "$WORK" "$WORK/hmacs.jsonl" "$WORK/forget-outputs.txt" "$WORK/sealed-before.jsonl" \
  >"$WORK/key-names.tsv" 2>"$WORK/key-names.txt"; then
  passed "key names from Vault's HMAC (names/src/lib.rs subject_key_name): $(sed 's/^ *//' "$WORK/key-names.txt")"
else
  failed "key names:$(tr '\n' ' ' <"$WORK/key-names.txt" | cut -c1-400)"
fi
vault_api LIST transit/keys >"$WORK/keys.json" || failed "LIST transit/keys"
check_with "OpenBao's LIST transit/keys: every other customer's key, none of the forgotten ones'" \
  "$WORK/vault-keys.txt" FC vault-keys "$WORK/key-names.tsv" "$WORK/keys.json"
statuses=$(awk -F '\t' '$3 == "forgotten" { print $2 }' "$WORK/key-names.tsv" | while read -r name; do
  curl -s -o /dev/null -w '%{http_code}\n' -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/transit/keys/$name"
done | sort | uniq -c | tr -s ' \n' ' ')
kept=$(awk -F '\t' '$3 == "kept" { print $2; exit }' "$WORK/key-names.tsv")
kept_status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/transit/keys/$kept")
if [ "$statuses" = " $FORGET 404 " ] && [ "$kept_status" = 200 ]; then
  passed "GET transit/keys/<name>: 404 for each of the $FORGET forgotten customers' keys (200 for another's)"
else
  failed "GET transit/keys/<name> of the forgotten customers' keys: HTTP${statuses}(another's: $kept_status)"
fi
raw_dump "$RAW" >"$WORK/raw.raw"
check_with "the raw dump of $RAW holds every customer's id, name and e-mail (the search works)" \
  "$WORK/raw-leaks.txt" LEAKS "$WORK/tokens.txt" "$WORK/raw.raw" --all
raw_dump "$SEALED" >"$WORK/sealed.raw"
say "$SEALED, the first record as kcat shows it (cut at 300 bytes):"
head -c 300 "$WORK/sealed.raw" | tr -c '[:print:]\n' '.'
echo
check_with "no customer's id, name or e-mail in the raw dump of $SEALED (keys, header names and values, values)" \
  "$WORK/sealed-leaks.txt" LEAKS "$WORK/tokens.txt" "$WORK/sealed.raw"

phase "the runners: logs and SIGTERM"
for runner in "seal $SEAL_PID $SEAL_LOG" "open $OPEN_PID $OPEN_LOG"; do
  read -r name pid log <<<"$runner"
  started=$(clock)
  if stop_pipeline "$pid" && grep -q '"stopped cleanly' "$log"; then
    passed "envelope-$name: exited 0 on SIGTERM within $(since "$started")"
  else
    failed "envelope-$name: did not stop cleanly on SIGTERM (log: $log)"
  fi
done
cat "$SEAL_LOG" "$OPEN_LOG" >"$WORK/runners.log"
check_with "no customer's id, name or e-mail in either runner's log" "$WORK/log-leaks.txt" \
  LEAKS "$WORK/tokens.txt" "$WORK/runners.log"
if grep -q 'panicked at' "$WORK/runners.log"; then
  failed "a runner panicked: $(grep -h 'panicked at' "$WORK/runners.log" | head -2 | cut -c1-300)"
else
  passed "no 'panicked at' in either runner's log"
fi

report_checks forget

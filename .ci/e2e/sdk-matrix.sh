#!/usr/bin/env bash
# The format 3 interoperability matrix (issue 22): each writer seals the same source
# records (JSON, a null key, an empty value, 100 kB, binary on another topic, a tombstone;
# repeated, valueless and non-ASCII headers) with every option on (record keys encrypted
# with Vault convergent encryption, headers sealed but traceparent, bound to stream and
# key, zstd, padded to 256), and each reader reads every writer's records back to the
# source key, value and headers in order, and refuses one moved to another topic.
# OpenBao over TLS holds the keys. Writers and readers are the Java serializers and
# deserializers (configured by properties), the Go Writer and Reader, and Python's
# writer.py and RecordReader; the convergent sink keys must agree across writers.
#
# The host takes part twice: with its own sealing and opening code (Envelopes and its
# Vault client, the ignored test format_3_matrix_with_the_hosts_own_seal_and_open in
# host/src/envelope.rs), and as the release runner with the built-in policies through
# Apache Kafka (matrix_host_policy_write and matrix_host_policy_read below): envelope-seal
# with every option writes the records the readers read, and envelope-open opens every
# writer's records (and dead-letters one moved to another topic).
# KAFKA_TRANSIT_MATRIX_NO_HOST=1 leaves the host out (no Rust build, no Kafka), for a quick
# local run; KAFKA_TRANSIT names a release binary to use instead of building one.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

MATRIX=$(mktemp -d -t kafka-transit-matrix.XXXXXX)
export KAFKA_TRANSIT_MATRIX_DIR=$MATRIX
if [ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" != 1 ]; then
  stack_init # Kafka's jars, OpenBao and the release runner (unless KAFKA_TRANSIT names one)
  start_kafka
else
  bash "$OPENBAO_SH" install >/dev/null
fi
start_openbao --tls
vault_write transit/keys/customers '{}'
vault_write transit/keys/customer-ids '{"derived": true, "convergent_encryption": true}'
PY="$REPO_ROOT/demos/python"
python3 "$PY/matrix.py" records "$MATRIX/records.json"
POLICY=$MATRIX/policy # the runner's files; not *.jsonl of $MATRIX, which are the writers' records
mkdir -p "$POLICY"

# source_topics RECORDS.json: the topics of the source records, one a line.
source_topics() { python3 -c 'import json, sys; print("\n".join(sorted({r["topic"] for r in json.load(open(sys.argv[1]))})))' "$1"; }
# records_on RECORDS.json TOPIC: how many of the source records are on TOPIC.
records_on() { python3 -c 'import json, sys; print(sum(r["topic"] == sys.argv[2] for r in json.load(open(sys.argv[1]))))' "$1" "$2"; }

# matrix_host_policy_write DIR: the policies' row: DIR/host-policy.jsonl, what kafka-transit's
# envelope-seal wrote with the options of matrix.py (record_keys = "encrypt",
# record_keys_key = "customer-ids", headers = "seal", keep_headers = ["traceparent"],
# bind = ["stream", "key"], compression = "zstd", pad_to = 256) from DIR/records.json
# produced to Kafka. Each source topic T is read as T.raw (one partition, so the sink
# keeps the source order) and written to T, the stream the records are bound to.
matrix_host_policy_write() {
  [ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" != 1 ] || { echo "SKIPPED the policies' row (KAFKA_TRANSIT_MATRIX_NO_HOST=1)" >&2; return 0; }
  local dir=$1 topics=() topic raw=()
  mapfile -t topics < <(source_topics "$dir/records.json")
  for topic in "${topics[@]}"; do raw+=("$topic.raw"); done
  create_topics "${topics[@]}" "${raw[@]}" matrix.raw.dlq
  pipeline_file "$POLICY/seal.toml" envelope-seal '{topic|strip_suffix:.raw}' matrix.raw.dlq 'key = "customers"
record_keys = "encrypt"
record_keys_key = "customer-ids"
headers = "seal"
keep_headers = ["traceparent"]
bind = ["stream", "key"]
compression = "zstd"
pad_to = 256' "${raw[@]}"
  start_pipeline "$POLICY/seal.toml" "$POLICY/seal.log"
  record_file produce "$dir/records.json" --suffix .raw
  for topic in "${topics[@]}"; do
    try_wait_for_records "$topic" "$(records_on "$dir/records.json" "$topic")" 60 \
      || fail "envelope-seal wrote $(record_file count "$topic") records to $topic, expected $(records_on "$dir/records.json" "$topic") (log: $POLICY/seal.log)"
  done
  stop_pipeline "$PIPELINE_PID" || fail "envelope-seal did not stop cleanly (log: $POLICY/seal.log)"
  [ "$(record_file count matrix.raw.dlq)" -eq 0 ] || fail "envelope-seal dead-lettered records (log: $POLICY/seal.log)"
  local dumps=()
  for topic in "${topics[@]}"; do
    record_file dump "$topic" >"$POLICY/$topic.sealed"
    dumps+=("$POLICY/$topic.sealed")
  done
  python3 "$PY/matrix.py" collect "$dir/records.json" "$dir/host-policy.jsonl" "${dumps[@]}"
}
# matrix_host_policy_read DIR: the policies' column: envelope-open with require_binding =
# ["stream", "key"] reads every DIR/*.jsonl produced to Kafka (each record to its topic,
# marked by a header in clear, matrix.from = file:line, which opening passes on), and
# each writer's first record produced to another topic, which it must dead-letter; what it
# opened must be the source records as a reader gives them back.
matrix_host_policy_read() {
  [ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" != 1 ] || { echo "SKIPPED the policies' column (KAFKA_TRANSIT_MATRIX_NO_HOST=1)" >&2; return 0; }
  local dir=$1 topics=() topic opened=() file files=()
  mapfile -t topics < <(source_topics "$dir/records.json")
  for topic in "${topics[@]}"; do opened+=("$topic.opened"); done
  create_topics "${topics[@]}" "${opened[@]}" matrix.open.dlq
  pipeline_file "$POLICY/open.toml" envelope-open '{topic}.opened' matrix.open.dlq 'key = "customers"
record_keys_key = "customer-ids"
require_binding = ["stream", "key"]' "${topics[@]}"
  start_pipeline "$POLICY/open.toml" "$POLICY/open.log"
  for file in "$dir"/*.jsonl; do
    files+=("$file")
    record_file produce "$file" --header "matrix.from=$(basename "$file"):{line}" >/dev/null
    # The writer's first record (on orders) moved to payments.eu.
    head -1 "$file" | python3 -c 'import json, sys; r = json.load(sys.stdin); r["topic"] = "payments.eu"; print(json.dumps(r))' \
      >"$POLICY/moved.jsonl"
    record_file produce "$POLICY/moved.jsonl" --header "matrix.from=$(basename "$file"):moved" >/dev/null
  done
  local want=$((${#files[@]} * $(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$dir/records.json")))
  local marked=0 deadline=$((SECONDS + 90))
  while :; do
    marked=0
    for topic in "${opened[@]}"; do
      record_file dump "$topic" >"$POLICY/$topic.jsonl"
      marked=$((marked + $(grep -c '"matrix.from"' "$POLICY/$topic.jsonl" || true)))
    done
    [ "$marked" -lt "$want" ] || [ "$(record_file count matrix.open.dlq)" -lt "${#files[@]}" ] || break
    [ "$SECONDS" -lt "$deadline" ] || fail "envelope-open gave back $marked of $want records and dead-lettered $(record_file count matrix.open.dlq) of ${#files[@]} (log: $POLICY/open.log)"
    sleep 1
  done
  stop_pipeline "$PIPELINE_PID" || fail "envelope-open did not stop cleanly (log: $POLICY/open.log)"
  record_file dump matrix.open.dlq >"$POLICY/dead.jsonl"
  local outputs=()
  for topic in "${opened[@]}"; do outputs+=("$POLICY/$topic.jsonl"); done
  python3 "$PY/matrix.py" opened "$dir/records.json" "${outputs[@]}" --dead "$POLICY/dead.jsonl" --writers "${files[@]}"
}
host_matrix() { # MODE
  [ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" != 1 ] || { echo "SKIPPED host $1 (KAFKA_TRANSIT_MATRIX_NO_HOST=1)" >&2; return 0; }
  local log="$MATRIX/host-$1.log"
  if ! (cd "$REPO_ROOT" && KAFKA_TRANSIT_MATRIX_MODE=$1 cargo test -q -p kafka-transit --lib -- --ignored --exact \
    envelope::tests::format_3_matrix_with_the_hosts_own_seal_and_open --nocapture) >"$log" 2>&1; then
    tail -40 "$log"
    fail "the host's $1 failed (its output above)"
  fi
  grep -E "^host (wrote|read)|test result" "$log"
}

java_matrix() { # MODE
  rm -f "$REPO_ROOT/clients/java/target/failsafe-reports/io.kafkatransit.client.MatrixIT-output.txt"
  (cd "$REPO_ROOT/clients/java" && KAFKA_TRANSIT_MATRIX_MODE=$1 mvn -q -B -Dstyle.color=never verify \
    -Dtest=NoUnitTestsHere -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=MatrixIT -Dfailsafe.failIfNoSpecifiedTests=false)
  # Failsafe keeps the test's output in a file; a run that printed nothing did not run.
  grep -E "^java (wrote|read)" "$REPO_ROOT/clients/java/target/failsafe-reports/io.kafkatransit.client.MatrixIT-output.txt" \
    || fail "MatrixIT did not run"
}
go_matrix() { # MODE
  (cd "$REPO_ROOT/clients/go" && KAFKA_TRANSIT_MATRIX_MODE=$1 go test -count=1 -run '^TestMatrix$' -v . \
    | grep -E "go (wrote|read)|^(ok|FAIL|---)")
}

say "writers: Python, Go, Java, the host (its own code, and envelope-seal through Kafka)"
python3 "$PY/matrix.py" write "$MATRIX/records.json" "$MATRIX/python.jsonl"
go_matrix write
java_matrix write
host_matrix write
matrix_host_policy_write "$MATRIX"
python3 "$PY/matrix.py" same-keys "$MATRIX"/*.jsonl

say "readers: each reads every writer's records"
python3 "$PY/matrix.py" read "$MATRIX/records.json" "$MATRIX"/*.jsonl
go_matrix read
java_matrix read
host_matrix read
matrix_host_policy_read "$MATRIX"
writers=$(ls "$MATRIX"/*.jsonl | wc -l)
readers="3 readers (Java, Go, Python)"
[ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" = 1 ] || readers="5 readers (Java, Go, Python, the host's own code, envelope-open through Kafka)"
say "format 3 matrix: $writers writers x $readers, every record read back, every moved one refused"
rm -rf "$MATRIX"

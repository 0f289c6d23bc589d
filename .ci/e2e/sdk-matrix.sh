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
# The host takes part with its own sealing and opening code (Envelopes and its Vault
# client, the ignored test format_3_matrix_with_the_hosts_own_seal_and_open in
# host/src/envelope.rs). The policies' row and column are the hooks
# matrix_host_policy_write and matrix_host_policy_read below: they need envelope-seal's and
# envelope-open's format 3 options (branch issue22-sdk) and report SKIPPED until then.
# KAFKA_TRANSIT_MATRIX_NO_HOST=1 leaves the host out (no Rust build), for a quick local run.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

MATRIX=$(mktemp -d -t kafka-transit-matrix.XXXXXX)
export KAFKA_TRANSIT_MATRIX_DIR=$MATRIX
bash "$OPENBAO_SH" install >/dev/null
start_openbao --tls
vault_write transit/keys/customers '{}'
vault_write transit/keys/customer-ids '{"derived": true, "convergent_encryption": true}'
PY="$REPO_ROOT/demos/python"
python3 "$PY/matrix.py" records "$MATRIX/records.json"

# matrix_host_policy_write DIR: the policies' row, DIR/host-policy.jsonl written by kafka-transit's
# envelope-seal with the options above (record_keys = "encrypt", record_keys_key =
# "customer-ids", headers = "seal", keep_headers = ["traceparent"], bind = ["stream",
# "key"], compression = "zstd", pad_to = 256) from DIR/records.json produced to Kafka.
matrix_host_policy_write() {
  echo "SKIPPED the policies' row: envelope-seal's format 3 options are not in this branch (issue22-sdk)" >&2
  return 0
}
# matrix_host_policy_read DIR: the policies' column, envelope-open with require_binding = ["stream",
# "key"] over every DIR/*.jsonl produced to Kafka, compared with DIR/records.json.
matrix_host_policy_read() {
  echo "SKIPPED the policies' column: envelope-open's format 3 options are not in this branch (issue22-sdk)" >&2
  return 0
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

say "writers: Python, Go, Java, the host (and the policies' hook)"
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
readers=$([ "${KAFKA_TRANSIT_MATRIX_NO_HOST:-}" = 1 ] && echo 3 || echo 4)
say "format 3 matrix: $writers writers x $readers readers, every record read back, every moved one refused"
rm -rf "$MATRIX"

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
# The host's row and column are the hooks matrix_host_write and matrix_host_read below:
# they need the envelope-seal and envelope-open policies' format 3 options (branch
# issue22-sdk). Until those land they report SKIPPED and the matrix is 3 x 3.
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

# matrix_host_write DIR: the host's row, DIR/host.jsonl written by kafka-transit's
# envelope-seal with the options above (record_keys = "encrypt", record_keys_key =
# "customer-ids", headers = "seal", keep_headers = ["traceparent"], bind = ["stream",
# "key"], compression = "zstd", pad_to = 256) from DIR/records.json produced to Kafka.
matrix_host_write() {
  echo "SKIPPED host writer: envelope-seal's format 3 options are not in this branch (issue22-sdk)" >&2
  return 0
}
# matrix_host_read DIR: the host's column, envelope-open with require_binding = ["stream",
# "key"] over every DIR/*.jsonl produced to Kafka, compared with DIR/records.json.
matrix_host_read() {
  echo "SKIPPED host reader: envelope-open's format 3 options are not in this branch (issue22-sdk)" >&2
  return 0
}

java_matrix() { # MODE
  (cd "$REPO_ROOT/clients/java" && KAFKA_TRANSIT_MATRIX_MODE=$1 mvn -q -B -Dstyle.color=never verify \
    -Dtest=MatrixIT -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=MatrixIT -Dfailsafe.failIfNoSpecifiedTests=false)
}
go_matrix() { # MODE
  (cd "$REPO_ROOT/clients/go" && KAFKA_TRANSIT_MATRIX_MODE=$1 go test -count=1 -run '^TestMatrix$' -v . \
    | grep -E "go (wrote|read)|^(ok|FAIL|---)")
}

say "writers: Python, Go, Java (and the host hook)"
python3 "$PY/matrix.py" write "$MATRIX/records.json" "$MATRIX/python.jsonl"
go_matrix write
java_matrix write
matrix_host_write "$MATRIX"
python3 "$PY/matrix.py" same-keys "$MATRIX"/*.jsonl

say "readers: each reads every writer's records"
python3 "$PY/matrix.py" read "$MATRIX/records.json" "$MATRIX"/*.jsonl
go_matrix read
java_matrix read
matrix_host_read "$MATRIX"
writers=$(ls "$MATRIX"/*.jsonl | wc -l)
say "format 3 matrix: $writers writers x 3 readers, every record read back, every moved one refused"
rm -rf "$MATRIX"

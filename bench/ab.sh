#!/usr/bin/env bash
# Before and after: harness binaries of two (or more) builds, alternating against one
# Apache Kafka and OpenBao, so that a change is compared with what ran just before it on
# the same broker, not with a run of another day.
#
#   bash bench/ab.sh ROUNDS ROWS BINARY...
#   e.g. bash bench/ab.sh 3 pipeline/passthrough/1KiB,pipeline/envelope-seal/1KiB \
#          /tmp/pipeline-before target/release/deps/pipeline-<hash>
#
# A BINARY is the harness of a build (`cargo bench -p kafka-transit --bench pipeline
# --no-run` prints its path; copy it aside before building the other side). Each of the
# ROUNDS runs every binary once, in the order given, with `--rounds 3 --min-seconds 3`
# on the ROWS (harness labels, comma-separated). Compare per round: the broker warms up
# over the first round or two, which moves both sides. Uses KAFKA_BOOTSTRAP, VAULT_ADDR
# and VAULT_TOKEN when all are set; otherwise starts Kafka and OpenBao here.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
ROUNDS=$1 ROWS=$2
shift 2
for binary in "$@"; do
  [ -x "$binary" ] || { echo "bench/ab.sh: $binary is not an executable harness" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
source demos/lib/stack.sh
stack_unless_given
SIZES=$(tr ',' '\n' <<<"$ROWS" | sed -n 's#.*/1MiB$#1048576#p; s#.*/1KiB$#1024#p' | sort -u | paste -sd,)
for round in $(seq 1 "$ROUNDS"); do
  for binary in "$@"; do
    say "round $round/$ROUNDS: $binary"
    "$binary" --bench --kafka "$KAFKA_BOOTSTRAP" --vault "$VAULT_ADDR" \
      --only "$ROWS" --sizes "${SIZES:-1024}" --rounds 3 --min-seconds 3 2>&1 |
      grep -E '^(measure|pipeline|policy)' || fail "$binary failed on round $round"
  done
done

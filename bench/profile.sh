#!/usr/bin/env bash
# Where the runner's CPU goes in one harness row: samples the harness process with
# `perf record` while the row runs and sums the samples by component (the Kafka client,
# the WebAssembly guest, wasmtime, the AEAD, the allocator, copies, the kernel, ...).
#
#   bash bench/profile.sh [ROW] [SECONDS]    # default pipeline/envelope-seal/1KiB, 20 s
#
# ROW is a harness label (`measure/policy/size`); `pipeline` rows run against Apache Kafka
# and OpenBao, started here unless KAFKA_BOOTSTRAP, VAULT_ADDR and VAULT_TOKEN are set.
# The harness runs the pipeline in its own process, so the samples are the runner's; the
# broker and OpenBao are other processes and are not counted. Needs perf (Debian:
# linux-perf). Guest code is JIT-compiled by wasmtime and has no symbols: it shows as
# "guest (JIT code)". See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROW=${1:-pipeline/envelope-seal/1KiB}
SECONDS_SAMPLED=${2:-20}
command -v perf >/dev/null || { echo "bench/profile.sh needs perf (Debian: apt-get install linux-perf)" >&2; exit 1; }
source demos/lib/stack.sh
stack_unless_given
OUT=$(mktemp -d -t kafka-transit-profile.XXXXXX)
case $ROW in
  */1MiB) SIZE=1048576 ;;
  *) SIZE=1024 ;;
esac
say "profiling $ROW for ${SECONDS_SAMPLED} s (perf data and harness log: $OUT)"
cargo bench -p kafka-transit --bench pipeline --no-run
# One long round of the row, so the sampling window falls inside it.
cargo bench -p kafka-transit --bench pipeline -- --kafka "$KAFKA_BOOTSTRAP" --vault "$VAULT_ADDR" \
  --only "$ROW" --sizes "$SIZE" --rounds 1 --min-seconds $((SECONDS_SAMPLED + 10)) \
  >"$OUT/harness.log" 2>&1 &
HARNESS=$!
STACK_PIDS+=("$HARNESS")
wait_for 600 "the row's first round" grep -q '^round 1/1' "$OUT/harness.log"
PID=$(pgrep -n -f 'deps/pipeline-.*--only') || fail "harness process not found"
sleep 3 # past the consumer group's join
# System-wide, then only this process: each pass makes a new consumer and producer, and
# `perf record -p` would miss the librdkafka threads they start.
perf record -a -F 499 -o "$OUT/perf.data" -- sleep "$SECONDS_SAMPLED" 2>"$OUT/perf.log"
wait "$HARNESS" || fail "harness failed: $OUT/harness.log"
grep -A3 '^measure' "$OUT/harness.log"

perf report -i "$OUT/perf.data" --pid "$PID" --stdio --no-children --sort dso,sym \
  2>/dev/null >"$OUT/report.txt"
grep -m1 '^# Samples' "$OUT/report.txt"
python3 - "$OUT/report.txt" <<'PY'
import re, sys
# First match wins: the order matters (memcpy inside librdkafka is still memcpy).
COMPONENTS = [
    ("kernel (syscalls, network, page faults)", r"\[k\]"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set)|__memcpy|__memmove"),
    ("AES-GCM (aws-lc)", r"aes|gcm|ghash|aws_lc|GFp"),
    ("allocator (mimalloc)", r"\bmi_|_mi_|mimalloc"),
    ("Kafka client (librdkafka, rdkafka)", r"\brd_|rdk|lz4|crc32|snappy|zstd|\bcnd_|\bmtx_|\bthrd_"),
    ("guest (JIT code)", r"\[unknown\]|wasm\["),
    ("wasmtime (calls, canonical ABI)", r"wasmtime|cranelift|component"),
    ("async runtime (tokio)", r"tokio|mio::|futures"),
    ("the pipeline's own Rust code", r"kafka_transit|pipeline|hashbrown|core::|alloc::"),
    ("libc, pthreads", r"pthread|libc|__GI|futex|clock_gettime"),
]
shares = {name: 0.0 for name, _ in COMPONENTS}
shares["other"] = 0.0
examples = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\[.\])\s+(.*)", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4].strip()
    text = f"{kind} {dso} {sym}"
    name = next((n for n, rx in COMPONENTS if re.search(rx, text, re.I)), "other")
    shares[name] += pct
    examples.setdefault(name, []).append((pct, sym))
# perf's percentages are of every process's samples: make them this process's shares.
total = sum(shares.values()) or 1.0
print(f"\n{'component':<42} {'share of the runner':>19}  top symbols")
for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
    pct = pct / total * 100
    if pct < 0.05:
        continue
    top = ", ".join(s[:40] for _, s in sorted(examples.get(name, []), reverse=True)[:3])
    print(f"{name:<42} {pct:>18.1f}%  {top}")
PY

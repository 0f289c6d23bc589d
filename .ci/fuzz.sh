#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo fuzz, libFuzzer): build them, run each for a bounded
# time, fail on a crash (a panic, a failed oracle, a hang) and say where the input is.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo fuzz needs nightly Rust: one pinned nightly, so that CI does not change under us.
NIGHTLY=nightly-2026-10-30 # rustc 1.101.0-nightly (92b5b8c87 2026-10-29)
CARGO_FUZZ_VERSION=0.13.2
CACHE=${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}
CARGO_FUZZ=$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION/bin/cargo-fuzz
# Build output and the corpus each target has grown, kept across runs on one machine:
# a warm run rebuilds nothing and goes on from where the last one stopped.
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$CACHE/fuzz-target}
FUZZ_CORPUS_DIR=${FUZZ_CORPUS_DIR:-$CACHE/fuzz-corpus}
TARGETS=(envelope_format names fields schema_fields policies config)
# Safe Rust only in what is fuzzed, so no sanitizer (AddressSanitizer would halve the
# executions for nothing); overflow checks and debug assertions are on (fuzz/Cargo.toml).
# `config` builds the host crate (wasmtime, librdkafka): its feature brings it in.
BUILD_FLAGS=(--sanitizer none --features config --target-dir "$FUZZ_TARGET_DIR")

usage() {
  cat <<EOF
usage: $(basename "$0") install | build | run [SECONDS] [TARGET...] | --help

  install   rustup toolchain $NIGHTLY (minimal, plus wasm32-wasip2 for the host's
            built-in policies) and cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE, if missing
  build     test the targets' helpers, build every target into $FUZZ_TARGET_DIR
  run       build, then run each TARGET (default: all of ${TARGETS[*]}) for SECONDS
            (default \$FUZZ_SECONDS or 60) from fuzz/corpus/TARGET and the corpus kept in
            $FUZZ_CORPUS_DIR; exit 1 if any crashed, naming the input to reproduce it with
EOF
}

install() {
  rustup toolchain list | grep -q "^$NIGHTLY" ||
    rustup toolchain install "$NIGHTLY" --profile minimal --target wasm32-wasip2
  rustup +"$NIGHTLY" target list --installed | grep -q wasm32-wasip2 ||
    rustup +"$NIGHTLY" target add wasm32-wasip2
  # Its own build directory, so that it never waits on another build's lock.
  [ -x "$CARGO_FUZZ" ] || env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked \
    --version "$CARGO_FUZZ_VERSION" --root "$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
}

fuzz() { # cargo fuzz SUBCOMMAND ARGS..., on the pinned nightly
  local subcommand=$1
  shift
  env -u CARGO_TARGET_DIR PATH="$(dirname "$CARGO_FUZZ"):$PATH" \
    cargo +"$NIGHTLY" fuzz "$subcommand" "${BUILD_FLAGS[@]}" "$@"
}

build() {
  local started=$SECONDS
  # The oracles' own helpers first (the record format, the JSON model).
  (cd fuzz && env -u CARGO_TARGET_DIR cargo +"$NIGHTLY" test --lib --target-dir "$FUZZ_TARGET_DIR")
  fuzz build
  echo "fuzz targets built in $((SECONDS - started))s"
}

run() {
  local seconds=${1:-${FUZZ_SECONDS:-60}}
  shift || true
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
  build
  local failed=() summary=()
  for target in "${targets[@]}"; do
    local corpus=$FUZZ_CORPUS_DIR/$target artifacts=fuzz/artifacts/$target log
    mkdir -p "$corpus" "$artifacts"
    log=$(mktemp -t "fuzz-$target.XXXXXX.log")
    echo "--- $target: ${seconds}s"
    # New inputs go to the kept corpus (first directory); the committed seeds are read
    # only. An input that runs 10 s is a hang, reported like a crash.
    if fuzz run "$target" "$corpus" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
      summary+=("$target: $(stats "$log")")
    else
      # The panic or libFuzzer's report, then how it ended.
      grep -m1 -A15 -E 'panicked at|ERROR: libFuzzer|ALARM: working' "$log" || true
      tail -25 "$log"
      local input
      input=$(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //' | tail -1)
      echo "FUZZ CRASH in $target: input ${input:-(none written, see the log above)}" >&2
      [ -z "$input" ] ||
        echo "  reproduce: cargo +$NIGHTLY fuzz run -s none --features config $target $input" >&2
      failed+=("$target")
      summary+=("$target: CRASHED")
    fi
  done
  printf '%s\n' "${summary[@]}"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    return 1
  fi
}

stats() { # LOG: executions and executions per second from libFuzzer's final stats
  awk '/stat::number_of_executed_units/ {runs=$2} /stat::average_exec_per_sec/ {rate=$2}
       /stat::new_units_added/ {new=$2}
       END {printf "%d runs, %d exec/s, %d new corpus entries", runs, rate, new}' "$1"
}

case ${1:-} in
  install) install ;;
  build) build ;;
  run) shift; run "$@" ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac

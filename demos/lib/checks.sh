# shellcheck shell=bash
# Suites that report every check and go on (chaos.sh, protect-all.sh): each check prints
# PASS or FAIL and is kept for the summary; phases are timed. Source after stack.sh.
#
#   passed TEXT / failed TEXT      # a check's verdict
#   phase NAME                     # ends the current phase (timed), starts NAME; `phase ""` ends it
#   PHASE_LABEL=...                # the first column of the timings (e.g. the delivery mode)
#   report_checks SUITE            # timings and verdicts; exits 1 (via fail) if any check failed

RESULTS=() # "PASS|FAIL <text>"
passed() { RESULTS+=("PASS $*"); printf '   \033[32mPASS\033[0m %s\n' "$*"; }
failed() { RESULTS+=("FAIL $*"); printf '   \033[31mFAIL\033[0m %s\n' "$*"; }
TIMINGS=()
PHASE="" PHASE_AT="" PHASE_LABEL=${PHASE_LABEL:-}
CHECKS_START=$SECONDS
phase() {
  if [ -n "$PHASE" ]; then
    local took
    took=$(since "$PHASE_AT")
    TIMINGS+=("$(printf '%-15s %-50s %7s' "$PHASE_LABEL" "$PHASE" "$took")")
    say "${PHASE_LABEL:+$PHASE_LABEL: }$PHASE took $took"
  fi
  PHASE=${1:-} PHASE_AT=$(clock)
  [ -z "$PHASE" ] || say "${PHASE_LABEL:+$PHASE_LABEL: }$PHASE (at $((SECONDS - CHECKS_START))s)"
}
# problems FILE: a check's PROBLEM lines, on one line.
problems() { grep PROBLEM "$1" | sed 's/^ *PROBLEM://' | cut -c1-400 | tr '\n' ';'; }
# check_with TEXT LOG COMMAND...: PASS TEXT when COMMAND succeeds, else FAIL TEXT with the
# PROBLEM lines COMMAND printed; its output is shown and kept in LOG.
check_with() {
  local text=$1 log=$2
  shift 2
  if "$@" 2>&1 | tee "$log"; then
    passed "$text"
  else
    failed "$text:$(problems "$log")"
  fi
}
report_checks() {
  local suite=$1 failures
  phase ""
  printf '\n\033[1m%s: time per phase\033[0m\n' "$suite"
  printf '   %s\n' "${TIMINGS[@]}"
  printf '\n\033[1m%s: checks\033[0m\n' "$suite"
  printf '   %s\n' "${RESULTS[@]}"
  failures=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL' || true)
  say "$suite: $((${#RESULTS[@]} - failures)) passed, $failures failed, in $((SECONDS - CHECKS_START))s"
  [ "$failures" -eq 0 ] || fail "$suite: $failures checks failed (logs and broker data kept)"
}

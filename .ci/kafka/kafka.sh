#!/usr/bin/env bash
# Real Apache Kafka for tests and demos: one KRaft node (broker + controller in one JVM),
# run from the jars Maven Central serves (CI machines have Maven Central, but no Apache
# download site and no Docker). See `kafka.sh --help`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
# The pom's <kafka.version> is the one place that sets the version.
VERSION="$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM")"
CACHE="${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}"
LIBS="$CACHE/kafka-$VERSION/libs"
# KAFKA_TRANSIT_KAFKA_LIBS: brokers run from these jars instead (another Kafka version that
# something else installed: bench/mirror.sh runs .ci/kafka/mirrormaker.sh's); install then
# only checks they are there.
if [ -n "${KAFKA_TRANSIT_KAFKA_LIBS:-}" ]; then
  LIBS=$KAFKA_TRANSIT_KAFKA_LIBS
  VERSION=$(find "$LIBS" -maxdepth 1 -name 'kafka_2.13-*.jar' -printf '%f\n' 2>/dev/null \
    | sed -n 's/^kafka_2\.13-\(.*\)\.jar$/\1/p' | head -n 1)
fi
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
SCRAM_USER=kafka-transit

usage() {
  cat <<EOF
Usage: kafka.sh COMMAND

  install                  Copy the Kafka $VERSION broker jars from Maven Central (once; cached
                           under $CACHE). Prints the libs dir.
  installed                Exit 0 and print the libs dir if install has been done, else exit 1
                           (so callers know whether Maven will be needed).
  start DIR [--sasl-ssl] [--name NAME]
                           Format a fresh single-node KRaft cluster in DIR, start it in the
                           background on free 127.0.0.1 ports and wait until it serves clients
                           (${START_TIMEOUT}s, KAFKA_START_TIMEOUT). Prints only the bootstrap address.
                           --sasl-ssl: the client listener is SASL_SSL with SCRAM-SHA-512 (user
                           $SCRAM_USER, random password) and a throwaway CA.
                           --name: a label for messages and for \`ps\` (default: DIR's name).
  stop DIR                 Stop the broker started in DIR (TERM, then KILL after 30s). No-op if
                           it is not running.
  kill DIR                 SIGKILL the broker started in DIR, as a crash would; its data stays.
  restart DIR              Start the broker of DIR again on its data, ports and settings (after
                           kill or stop), wait until it serves clients; prints the bootstrap address.
  pause DIR / resume DIR   SIGSTOP / SIGCONT the broker's JVM: a broker that hangs with its
                           connections open (stop resumes a paused broker first).

Files in DIR: bootstrap, client.properties (librdkafka style), pid, name, broker.log (WARN, plus
startup), console.log (JVM output), server.properties, log4j2.properties, data/;
with --sasl-ssl also ca.pem, sasl-username, sasl-password (mode 600), tls/.
EOF
}

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
  if [ -n "${KAFKA_TRANSIT_KAFKA_LIBS:-}" ]; then
    [ -n "$VERSION" ] || die "KAFKA_TRANSIT_KAFKA_LIBS=$LIBS holds no kafka_2.13 jar"
    echo "$LIBS"
    return
  fi
  if [ ! -d "$LIBS" ]; then
    command -v mvn >/dev/null || die "mvn (Maven) is required to install Kafka"
    say "installing Kafka $VERSION jars from Maven Central into $CACHE"
    mkdir -p "$CACHE"
    # Download next to the final place, then rename: an interrupted install leaves only a
    # temp dir behind, never a half-filled kafka-$VERSION that would pass for installed.
    INSTALL_TMP="$(mktemp -d "$CACHE/.kafka-$VERSION.XXXXXX")"
    trap 'rm -rf "$INSTALL_TMP"' EXIT
    chmod 755 "$INSTALL_TMP"
    # Maven prints (even with -q) to stdout; stdout is reserved for the answer.
    mvn -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$INSTALL_TMP/libs" >&2 || die "mvn could not fetch Kafka $VERSION"
    # A concurrent install may have won the race; its result is as good as ours (and the
    # EXIT trap removes ours).
    mv -T "$INSTALL_TMP" "$CACHE/kafka-$VERSION" 2>/dev/null || true
  fi
  echo "$LIBS"
}

# Two free loopback ports, one per listener (both sockets stay bound until both are
# picked, so the two differ).
free_ports() {
  python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))'
}

# Succeeds when the broker answers an ApiVersions request (over TLS when a CA is given):
# the listener is open and requests are processed, before any SASL exchange.
answers_api_versions() {
  python3 - "$@" <<'PY' 2>/dev/null
import socket, ssl, struct, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((host, port), timeout=5)
if ca:
    sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=host)
body = struct.pack(">hhih", 18, 0, 42, 8) + b"kafka.sh"  # ApiVersions v0, correlation 42
sock.sendall(struct.pack(">i", len(body)) + body)
reply = b""
while len(reply) < 10:
    chunk = sock.recv(10 - len(reply))
    if not chunk:
        sys.exit(1)
    reply += chunk
size, correlation, error = struct.unpack(">iih", reply)
sys.exit(0 if correlation == 42 and error == 0 else 1)
PY
}

# Throwaway CA and a broker certificate valid for 127.0.0.1 and localhost (EC keys: fast to
# make). Kafka reads the unencrypted PKCS#8 key and the chain from one PEM file.
make_tls() {
  local dir=$1 tls=$1/tls
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=kafka-transit test CA" -keyout "$tls/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  openssl x509 -req -in "$tls/broker.csr" -CA "$dir/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -CAserial "$tls/ca.srl" -days 30 -out "$tls/broker.crt" 2>/dev/null \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  cat "$tls/broker.key" "$tls/broker.crt" "$dir/ca.pem" >"$tls/broker-keystore.pem"
}

cmd_start() {
  local dir="" sasl=false name=""
  while [ $# -gt 0 ]; do
    case $1 in
      --sasl-ssl) sasl=true ;;
      --name) name=${2:?--name needs a value}; shift ;;
      -*) die "unknown option $1" ;;
      *) [ -z "$dir" ] || die "one DIR only"; dir=$1 ;;
    esac
    shift
  done
  [ -n "$dir" ] || die "usage: kafka.sh start DIR [--sasl-ssl] [--name NAME]"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  name=${name:-$(basename "$dir")}
  if is_running "$dir"; then die "$name: a broker already runs in $dir (kafka.sh stop $dir)"; fi

  local libs
  libs="$(cmd_install)"
  # Everything written here is for this user only (keys, passwords, data).
  umask 077
  rm -rf "$dir/data" "$dir/tls" "$dir/pid" "$dir/bootstrap"
  local port cport
  read -r port cport < <(free_ports)
  [ -n "${cport:-}" ] || die "could not pick free ports (python3 is required)"

  local protocol=PLAINTEXT
  if $sasl; then protocol=SASL_SSL; fi
  cat >"$dir/server.properties" <<EOF
# Written by kafka.sh: one node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=CLIENT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://127.0.0.1:$port
listener.security.protocol.map=CLIENT:$protocol,CONTROLLER:PLAINTEXT
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
# Internal topics sized for one node: the defaults (3 replicas, min ISR 2) make
# transactions and share groups fail here.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
default.replication.factor=1
# One partition each instead of 50: a fresh cluster's first group join and first
# transaction come about 2.5 s sooner. (All coordinators are this node anyway.)
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
# Tests create their topics: a typo in a topic name fails instead of creating a topic.
auto.create.topics.enable=false
# Tests should not wait: no initial rebalance delay, short session timeouts allowed.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
# Large-record tests: 64 MiB records (socket.request.max.bytes defaults to 100 MiB, enough).
message.max.bytes=67108864
replica.fetch.max.bytes=67108864
EOF

  local scram=()
  if $sasl; then
    make_tls "$dir"
    local password admin_password
    password="$(openssl rand -hex 24)"
    admin_password="$(openssl rand -hex 24)"
    printf '%s\n' "$SCRAM_USER" >"$dir/sasl-username"
    printf '%s\n' "$password" >"$dir/sasl-password"
    chmod 600 "$dir/sasl-password"
    # Users live in the metadata log, so they are added when formatting: the broker's own
    # (inter-broker) user and the one clients use.
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]"
           --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$password]")
    cat >>"$dir/server.properties" <<EOF
# SASL_SSL client listener; the broker talks to itself (e.g. transaction markers) over it.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
    cat >"$dir/client.properties" <<EOF
bootstrap.servers=127.0.0.1:$port
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$SCRAM_USER
ssl.ca.location=$dir/ca.pem
# sasl.password: read it from $dir/sasl-password
EOF
  else
    printf 'bootstrap.servers=127.0.0.1:%s\nsecurity.protocol=PLAINTEXT\n' "$port" >"$dir/client.properties"
  fi

  # The broker logs to a file (it runs detached), at WARN except its startup line.
  cat >"$dir/log4j2.properties" <<EOF
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
EOF

  java_command "$dir" "$name" "$libs"
  # --standalone: this controller alone is the (dynamic) KRaft quorum, as Kafka 4's
  # quickstart does; it goes with controller.quorum.bootstrap.servers (not .voters).
  "${JAVA[@]}" kafka.tools.StorageTool format --standalone -c "$dir/server.properties" \
    -t "$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)" "${scram[@]}" \
    >"$dir/console.log" 2>&1 || { cat "$dir/console.log" >&2; die "$name: formatting failed"; }

  : >"$dir/broker.log"
  echo "$name" >"$dir/name"
  launch "$dir" "$name" "$port" "$protocol"
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "127.0.0.1:$port"
}

# java_command DIR NAME LIBS: the JVM command line of DIR's broker and tools, in JAVA.
java_command() {
  JAVA=(java -Xms256m -Xmx768m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$1/log4j2.properties" "-Dkafka.transit.name=$2"
        -cp "$3/*")
}

# launch DIR NAME PORT PROTOCOL: starts the broker of DIR (formatted already) and waits
# until it serves clients; only a 'Kafka Server started' logged by this start counts.
launch() {
  local dir=$1 name=$2 port=$3 protocol=$4 logged
  logged=$(wc -l <"$dir/broker.log")
  # setsid: the broker gets its own session, so the caller's Ctrl-C or hangup does not
  # reach it; it runs until `kafka.sh stop DIR`. The child records its own pid (exec keeps it).
  # shellcheck disable=SC2016 # $$ is meant for the child shell: it is the broker's pid.
  setsid bash -c 'echo $$ >"$1/pid"; shift; exec "$@"' _ "$dir" \
    "${JAVA[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/console.log" 2>&1 &
  say "$name: starting Kafka $VERSION ($protocol on 127.0.0.1:$port)"

  # If this script is interrupted while waiting, do not leave the broker behind.
  trap 'cmd_stop "$dir"; exit 130' INT TERM
  local ca="" deadline=$((SECONDS + START_TIMEOUT))
  if [ "$protocol" = SASL_SSL ]; then ca="$dir/ca.pem"; fi
  until tail -n +"$((logged + 1))" "$dir/broker.log" | grep -q 'Kafka Server started' \
      && answers_api_versions 127.0.0.1 "$port" "$ca"; do
    if [ -s "$dir/pid" ] && ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -n 40 "$dir/broker.log" "$dir/console.log" >&2
      rm -f "$dir/pid"
      die "$name: the broker exited during startup"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$dir/broker.log" "$dir/console.log" >&2
      cmd_stop "$dir"
      die "$name: not ready after ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  trap - INT TERM
}

# restart DIR: the broker of DIR again, on the data, ports and settings it had.
cmd_restart() {
  local dir=${1:?usage: kafka.sh restart DIR}
  dir="$(cd "$dir" && pwd)"
  if [ ! -f "$dir/server.properties" ] || [ ! -d "$dir/data" ]; then die "$dir holds no broker (kafka.sh start DIR)"; fi
  local name port protocol=PLAINTEXT
  name=$(cat "$dir/name" 2>/dev/null || basename "$dir")
  if is_running "$dir"; then die "$name: a broker already runs in $dir"; fi
  port=$(sed -n 's/^listeners=CLIENT:\/\/127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$dir/server.properties")
  [ -n "$port" ] || die "$name: no client listener in $dir/server.properties"
  if [ -f "$dir/ca.pem" ]; then protocol=SASL_SSL; fi
  java_command "$dir" "$name" "$(cmd_install)"
  umask 077
  launch "$dir" "$name" "$port" "$protocol"
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "127.0.0.1:$port"
}

# kill DIR: SIGKILL, as a crash (or the OOM killer) would end the broker.
cmd_kill() {
  local dir=${1:?usage: kafka.sh kill DIR} pid i
  dir="$(cd "$dir" && pwd)"
  is_running "$dir" || die "$dir: no broker runs there"
  pid="$(cat "$dir/pid")"
  kill -KILL "$pid"
  # is_running, not kill -0: a dead broker nobody has reaped yet is a zombie, without a
  # command line, and kill -0 still finds it.
  for ((i = 0; i < 100; i++)); do
    is_running "$dir" || break
    sleep 0.1
  done
  ! is_running "$dir" || die "$dir: broker $pid still there 10s after SIGKILL"
  rm -f "$dir/pid"
}

# signal_broker DIR SIGNAL: SIGSTOP / SIGCONT to the broker's JVM.
signal_broker() {
  local dir=$1
  dir="$(cd "$dir" && pwd)"
  is_running "$dir" || die "$dir: no broker runs there"
  kill "-$2" "$(cat "$dir/pid")"
}

# True when DIR/pid names a live broker started for DIR (guards against a reused pid).
is_running() {
  local pid
  pid="$(cat "$1/pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $1/server.properties"
}

cmd_stop() {
  local dir=${1:?usage: kafka.sh stop DIR}
  dir="$(cd "$dir" 2>/dev/null && pwd)" || return 0
  if is_running "$dir"; then
    local pid i
    pid="$(cat "$dir/pid")"
    kill -CONT "$pid" 2>/dev/null || true # a paused broker would not see the TERM
    kill -TERM "$pid"
    # A controlled shutdown takes a few seconds; give it 30 before killing.
    for ((i = 0; i < 60; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$dir: broker did not stop in 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/pid" "$dir/bootstrap"
}

case ${1:-} in
  install) cmd_install ;;
  installed) [ -d "$LIBS" ] || exit 1; echo "$LIBS" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  pause) signal_broker "${2:?usage: kafka.sh pause DIR}" STOP ;;
  resume) signal_broker "${2:?usage: kafka.sh resume DIR}" CONT ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac

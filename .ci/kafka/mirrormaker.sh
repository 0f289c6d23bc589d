#!/usr/bin/env bash
# Apache Kafka's MirrorMaker 2 from Maven Central, for bench/mirror.sh: the jars of an
# Apache Kafka broker (kafka_2.13) and of org.apache.kafka:connect-mirror (with
# connect-runtime and the rest of its runtime classpath), one version on one classpath as
# the release tarball has them, cached by version next to kafka.sh's install.
#
#   mirrormaker.sh install     # fetch once; prints the libs dir
#   mirrormaker.sh installed   # exit 0 and print the libs dir when installed, else exit 1
#   mirrormaker.sh version     # the Kafka version it installs
#
# MirrorMaker runs as `java -cp 'LIBS/*' org.apache.kafka.connect.mirror.MirrorMaker
# mm2.properties`; brokers of the same version as `KAFKA_TRANSIT_KAFKA_LIBS=LIBS kafka.sh start DIR`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# connect-mirror and connect-mirror-client are served on Maven Central only up to 4.3.1
# (checked when this was written: not at 4.3.2 nor at pom.xml's 4.4.0, although the broker
# and connect-runtime are), so the MirrorMaker benchmark runs its brokers and MirrorMaker at
# this version. Raise it to pom.xml's once connect-mirror is published there.
VERSION="${MIRRORMAKER_KAFKA_VERSION:-4.3.1}"
LOG4J_VERSION="$(sed -n 's:.*<log4j\.version>\(.*\)</log4j\.version>.*:\1:p' "$HERE/pom.xml")"
CACHE="${KAFKA_TRANSIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-transit}"
LIBS="$CACHE/kafka-mirrormaker-$VERSION/libs"

say() { printf 'mirrormaker.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
  if [ ! -d "$LIBS" ]; then
    command -v mvn >/dev/null || die "mvn (Maven) is required to install MirrorMaker 2"
    say "installing Kafka and MirrorMaker 2 (connect-mirror) $VERSION jars from Maven Central into $CACHE"
    mkdir -p "$CACHE"
    # As kafka.sh: fill a temp dir next to the final place, then rename it.
    INSTALL_TMP="$(mktemp -d "$CACHE/.kafka-mirrormaker-$VERSION.XXXXXX")"
    trap 'rm -rf "$INSTALL_TMP"' EXIT
    chmod 755 "$INSTALL_TMP"
    # A Maven repository of its own (removed with the temp dir): CI runs this next to
    # kafka.sh's install, and two Maven 3.8 processes downloading the same artifacts
    # (log4j, jackson, scala-library) into one local repository can clash.
    mvn -q -B -f "$HERE/mirrormaker-pom.xml" -Dkafka.version="$VERSION" -Dlog4j.version="$LOG4J_VERSION" \
      -Dmaven.repo.local="$INSTALL_TMP/m2" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$INSTALL_TMP/libs" >&2 || die "mvn could not fetch Kafka and connect-mirror $VERSION"
    rm -rf "$INSTALL_TMP/m2"
    mv -T "$INSTALL_TMP" "$CACHE/kafka-mirrormaker-$VERSION" 2>/dev/null || true
  fi
  echo "$LIBS"
}

case ${1:-} in
  install) cmd_install ;;
  installed) [ -d "$LIBS" ] || exit 1; echo "$LIBS" ;;
  version) echo "$VERSION" ;;
  *) echo "usage: mirrormaker.sh install|installed|version" >&2; exit 2 ;;
esac

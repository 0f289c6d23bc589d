#!/usr/bin/env bash
# Demo 1: without kafka-transit, whoever operates Kafka reads everything.
#
# A plain application (demos/python/producer.py: confluent-kafka, no cryptography)
# writes customer records to customers.raw. The Kafka administrator, with nothing but
# kcat and access to the broker, sees names, SSNs, card numbers and IBANs.
# Check: every card number is readable in kcat's output.
set -euo pipefail
DEMOS="$(cd "$(dirname "$0")" && pwd)"
source "$DEMOS/lib/stack.sh"

N=20
WORK=$(mktemp -d -t kafka-transit-demo01.XXXXXX)
printf '\n\033[1;34m=== Demo 1: the Kafka administrator reads your customers in the clear ===\033[0m\n'
demo_stack
RAW="customers.raw$DEMO_TOPIC_SUFFIX"
create_topics "$RAW" >/dev/null

step "the application writes $N customer records to $RAW (producer.py: confluent-kafka only)"
python3 "$DEMOS/python/producer.py" --bootstrap "$KAFKA_BOOTSTRAP" --topic "$RAW" \
  --count "$N" --out "$WORK/originals.tsv"

step "what the Kafka administrator sees: kcat -b $KAFKA_BOOTSTRAP -C -t $RAW"
admin_view "$RAW" >"$WORK/admin.tsv"
show_records 3 180 <"$WORK/admin.tsv"

# Every card number the application wrote must be visible to the operator: that is the
# problem the next demos solve.
python3 - "$WORK/originals.tsv" >"$WORK/cards.txt" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    print(json.loads(line.split("\t", 1)[1])["card"]["number"])
PY
readable=$(grep -cFf "$WORK/cards.txt" "$WORK/admin.tsv" || true)
[ "$readable" -eq "$N" ] || fail "expected $N card numbers in the admin's view, found $readable"
check "all $readable card numbers (and names, SSNs, IBANs) are readable by the administrator"
echo "demo 01: passed"

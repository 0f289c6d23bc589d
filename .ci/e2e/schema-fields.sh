#!/usr/bin/env bash
# Schema'd records end to end (docs/schema-fields.md), against real processes: Apache
# Kafka, OpenBao, Apicurio Registry's Confluent-compatible API and the kafka-transit
# binary. Customers written with confluent-kafka's own Avro, Protobuf and JSON Schema
# serializers (PII-tagged fields nested, in arrays, in an optional field and a oneof; see
# demos/python/schema_records.py) go through encrypt-schema-fields:
# - a stock Confluent consumer (schema_records.py check, no kafka-transit code) reads every
#   protected record: every untagged field as it was, every tagged one a vault: string;
# - a record with an unknown schema id and one with a bad magic byte are dead-lettered;
# - the registry killed (SIGKILL) while records of a schema the runner has not seen yet
#   arrive: the runner pauses (nothing protected, nothing dead-lettered) and goes on when
#   the registry is back, losing nothing;
# - the Python, Go and Java readers open every protected record, and
#   decrypt-schema-fields gives every record back: each field-identical to what was
#   produced (checked by the same stock consumer).
# Protection is format 3 (docs/protected-records.md): each field bound to its topic, its
# record key and its located path; a protected value moved under another record's key on
# the sink is dead-lettered by decrypt-schema-fields (require_binding) and refused by the
# readers.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=300
RECORDS="python3 $REPO_ROOT/demos/python/schema_records.py"
WORK=$(mktemp -d -t kafka-transit-schema.XXXXXX)
FORMATS=(avro protobuf json)

stack_init
bash "$REGISTRY_SH" java >/dev/null || fail "the registry needs Java 21 or later (see above)"
$RECORDS self-test >"$WORK/self-test.log" || { cat "$WORK/self-test.log"; fail "schema_records.py self-test"; }
start_kafka
start_openbao
start_registry
topics=(schema.dlq:1 schema.restored.dlq:1 customers-json.staging:3)
for format in "${FORMATS[@]}"; do
  topics+=("customers-$format.raw:3" "customers-$format.protected:3" "customers-$format.restored:3")
done
create_topics "${topics[@]}"
vault_write transit/keys/customers '{}'

records() { # COMMAND TOPIC FORMAT [options]: schema_records.py against this stack
  local command=$1 topic=$2 format=$3
  shift 3
  $RECORDS "$command" --bootstrap "$KAFKA_BOOTSTRAP" --registry "$SCHEMA_REGISTRY" --topic "$topic" \
    --format "$format" --count "$N" "$@"
}
# with_registry FILE: the pipeline reads schemas from this stack's registry.
with_registry() { printf '\n[schema_registry]\nurl = "%s"\nrequest_timeout = "3s"\n' "$SCHEMA_REGISTRY" >>"$1"; }
records_on() { record_file count "$1"; }
has_records() { [ "$(records_on "$1")" -ge "$2" ]; } # TOPIC COUNT: for wait_for, which re-runs it

say "$N customers each as Avro and Protobuf, and as JSON Schema held back on a staging topic; a record with an unknown schema id and one with a bad magic byte"
records produce customers-avro.raw avro >/dev/null
records produce customers-protobuf.raw protobuf >/dev/null
records produce customers-json.staging json >/dev/null
$RECORDS produce-unknown-id --bootstrap "$KAFKA_BOOTSTRAP" --topic customers-avro.raw >/dev/null
$RECORDS produce-bad-magic --bootstrap "$KAFKA_BOOTSTRAP" --topic customers-protobuf.raw >/dev/null

pipeline_file "$WORK/protect.toml" encrypt-schema-fields '{topic|strip_suffix:.raw}.protected' schema.dlq \
  $'key = "customers"\nbind = ["stream", "key"]' '^customers-[a-z]+[.]raw$'
with_registry "$WORK/protect.toml"
"$KAFKA_TRANSIT" validate --connect --config "$WORK/protect.toml"
start_pipeline "$WORK/protect.toml" "$WORK/protect.log"
protector=$PIPELINE_PID
for format in avro protobuf; do
  wait_for 120 "$N protected $format customers (log: $WORK/protect.log)" \
    has_records "customers-$format.protected" "$N"
done
wait_for 60 "the two hostile records dead-lettered" has_records schema.dlq 2

say "the registry killed (SIGKILL); JSON Schema customers, whose schema the runner has not seen, arrive"
registry_kill
record_file dump customers-json.staging | sed 's/"topic": *"customers-json.staging"/"topic": "customers-json.raw"/' \
  >"$WORK/json-records.jsonl"
[ "$(wc -l <"$WORK/json-records.jsonl")" -eq "$N" ] || fail "the staging topic holds $(wc -l <"$WORK/json-records.jsonl") records, not $N"
record_file produce "$WORK/json-records.jsonl" >/dev/null
wait_for 60 "the runner to find the registry unavailable (log: $WORK/protect.log)" \
  grep -q 'schema registry unavailable' "$WORK/protect.log"
sleep 5
kill -0 "$protector" 2>/dev/null || fail "the runner stopped while the registry was down (log: $WORK/protect.log)"
[ "$(records_on customers-json.protected)" -eq 0 ] || fail "records went through without their schema"
[ "$(records_on schema.dlq)" -eq 2 ] || fail "records were dead-lettered while the registry was down"
say "the registry restarted: the runner goes on"
registry_restart
wait_for 120 "$N protected json customers after the registry came back (log: $WORK/protect.log)" \
  has_records customers-json.protected "$N"
stop_pipeline "$protector" || fail "the protecting runner did not stop cleanly (log: $WORK/protect.log)"
[ "$(records_on schema.dlq)" -eq 2 ] || fail "schema.dlq holds $(records_on schema.dlq) records, not the 2 hostile ones"

say "a stock Confluent consumer reads every protected record: untagged fields as they were, tagged ones vault: strings"
for format in "${FORMATS[@]}"; do
  records check "customers-$format.protected" "$format" --expect protected \
    || fail "customers-$format.protected is not what a stock consumer should read"
done
bound_everywhere() { # TOPIC: every record carries the format 3 header of bind = ["stream", "key"]
  record_file dump "$1" | python3 -c '
import json, sys
flags = {next((bytes.fromhex(v or "").decode() for n, v in json.loads(line)["headers"]
               if n == "kafka-transit.protection"), None) for line in sys.stdin}
sys.exit(0 if flags == {"3;03"} else f"protection headers {flags}, expected 3;03 on every record")'
}
for format in "${FORMATS[@]}"; do
  bound_everywhere "customers-$format.protected" || fail "customers-$format.protected is not bound to stream and key"
done

# reader_input TOPIC >FILE: the topic's records as the readers take them, JSON lines of
# {"key", "value"} in base64. reader_output FILE TOPIC: a reader's output produced to TOPIC
# (fails on any record the reader could not open), for the stock consumer to check.
reader_input() {
  record_file dump "$1" | python3 -c '
import base64, json, sys
b64 = lambda hx: None if hx is None else base64.b64encode(bytes.fromhex(hx)).decode()
for line in sys.stdin:
    record = json.loads(line)
    print(json.dumps({"topic": record["topic"], "key": b64(record["key"]), "value": b64(record["value"]),
                      "headers": [[name, b64(value)] for name, value in record["headers"]]}))'
}
reader_output() {
  python3 - "$1" "$2" >"$1.records" <<'PY'
import base64, json, sys
hx = lambda b64: None if b64 is None else base64.b64decode(b64).hex()
errors = 0
for line in open(sys.argv[1]):
    record = json.loads(line)
    if "error" in record:
        errors += 1
        print(f"could not open: {record['error']}", file=sys.stderr)
        continue
    print(json.dumps({"topic": sys.argv[2], "key": hx(record["key"]), "value": hx(record["value"]), "headers": []}))
sys.exit(1 if errors else 0)
PY
  record_file produce "$1.records" >/dev/null
}
# read_with READER FORMAT COMMAND...: COMMAND (with IN and OUT set) opens the protected
# FORMAT customers; a stock consumer then finds every one field-identical.
read_with() {
  local reader=$1 format=$2
  shift 2
  local in="$WORK/$format.protected.jsonl" out="$WORK/$format.$reader.jsonl"
  [ -f "$in" ] || reader_input "customers-$format.protected" >"$in"
  IN=$in OUT=$out "$@" >"$out.log" 2>&1 || { tail -20 "$out.log"; fail "the $reader reader failed on $format"; }
  create_topics "customers-$format.read-by-$reader:1" >/dev/null
  reader_output "$out" "customers-$format.read-by-$reader" || fail "the $reader reader could not open every $format record"
  records check "customers-$format.read-by-$reader" "$format" --expect plain \
    || fail "what the $reader reader opened is not the $format customers produced"
}

say "the Python reader (confluent-kafka's deserializers and one Vault batch request) opens every protected record"
for format in "${FORMATS[@]}"; do
  read_with python "$format" bash -c 'python3 "$0/demos/python/schema_fields.py" open-file --in "$IN" --out "$OUT" \
    --registry "$SCHEMA_REGISTRY" --format "$1" --key customers --require-binding stream key' "$REPO_ROOT" "$format"
done

say "the Go reader (clients/go/schemafields) opens every protected record"
for format in "${FORMATS[@]}"; do
  read_with go "$format" bash -c 'cd "$0/clients/go" && KAFKA_TRANSIT_SCHEMA_IN=$IN KAFKA_TRANSIT_SCHEMA_OUT=$OUT \
    KAFKA_TRANSIT_SCHEMA_REGISTRY=$SCHEMA_REGISTRY KAFKA_TRANSIT_SCHEMA_KEY=customers \
    KAFKA_TRANSIT_SCHEMA_REQUIRE_BINDING=stream,key go test -count=1 -run TestSchemaRecordsFile -v ./schemafields' "$REPO_ROOT"
done

say "the Java reader (io.kafkatransit.client.schema, SchemaRecordsFileIT) opens every protected record"
for format in "${FORMATS[@]}"; do
  read_with java "$format" bash -c 'cd "$0/clients/java" && KAFKA_TRANSIT_SCHEMA_IN=$IN KAFKA_TRANSIT_SCHEMA_OUT=$OUT \
    KAFKA_TRANSIT_SCHEMA_REGISTRY=$SCHEMA_REGISTRY KAFKA_TRANSIT_SCHEMA_KEY=customers \
    KAFKA_TRANSIT_SCHEMA_REQUIRE_BINDING=stream,key mvn -q -B verify -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=SchemaRecordsFileIT' "$REPO_ROOT"
done

say "the sink's operator moves a protected Avro value under another record's key: the Python reader refuses it"
record_file dump customers-avro.protected >"$WORK/avro.protected.dump.jsonl"
python3 -c '
import json, sys
lines = open(sys.argv[1])
first, second = (json.loads(lines.readline()) for _ in range(2))
print(json.dumps({"topic": first["topic"], "key": first["key"], "value": second["value"], "headers": second["headers"]}))
print(first["key"], file=sys.stderr)' "$WORK/avro.protected.dump.jsonl" >"$WORK/moved.jsonl" 2>"$WORK/moved.key"
python3 -c '
import base64, json, sys
b64 = lambda hx: None if hx is None else base64.b64encode(bytes.fromhex(hx)).decode()
record = json.load(open(sys.argv[1]))
print(json.dumps({"topic": record["topic"], "key": b64(record["key"]), "value": b64(record["value"]),
                  "headers": [[name, b64(value)] for name, value in record["headers"]]}))' "$WORK/moved.jsonl" \
  >"$WORK/moved.reader.jsonl"
python3 "$REPO_ROOT/demos/python/schema_fields.py" open-file --in "$WORK/moved.reader.jsonl" --out "$WORK/moved.python.jsonl" \
  --registry "$SCHEMA_REGISTRY" --format avro --key customers --require-binding stream key >/dev/null
grep -q '"error": .*does not authenticate' "$WORK/moved.python.jsonl" \
  || fail "the Python reader did not refuse the moved record as not authentic: $(cat "$WORK/moved.python.jsonl")"
record_file produce "$WORK/moved.jsonl" >/dev/null

say "decrypt-schema-fields gives every record back, and dead-letters the moved one"
pipeline_file "$WORK/restore.toml" decrypt-schema-fields '{topic|strip_suffix:.protected}.restored' \
  schema.restored.dlq $'key = "customers"\nrequire_binding = ["stream", "key"]' '^customers-[a-z]+[.]protected$'
with_registry "$WORK/restore.toml"
start_pipeline "$WORK/restore.toml" "$WORK/restore.log"
for format in "${FORMATS[@]}"; do
  wait_for 120 "$N restored $format customers (log: $WORK/restore.log)" \
    has_records "customers-$format.restored" "$N"
done
wait_for 60 "the moved record dead-lettered (log: $WORK/restore.log)" has_records schema.restored.dlq 1
stop_pipeline "$PIPELINE_PID" || fail "the restoring runner did not stop cleanly (log: $WORK/restore.log)"
dead=$(record_file dump schema.restored.dlq)
[ "$(grep -c . <<<"$dead")" -eq 1 ] || fail "schema.restored.dlq holds $(grep -c . <<<"$dead") records, not the moved one alone"
python3 -c '
import json, sys
record = json.loads(sys.argv[1])
errors = {n: bytes.fromhex(v or "").decode() for n, v in record["headers"]}
assert record["key"] == sys.argv[2], "another record was dead-lettered"
assert "authentication failed" in errors.get("kafka-transit.error", ""), errors
' "$dead" "$(cat "$WORK/moved.key")" || fail "the dead letter is not the moved record refused for its binding"
for format in "${FORMATS[@]}"; do
  records check "customers-$format.restored" "$format" --expect plain \
    || fail "customers-$format.restored is not field-identical to what was produced"
done
say "schema'd records: all checks passed"

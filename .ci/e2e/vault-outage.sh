#!/usr/bin/env bash
# A long Vault outage on Apache Kafka and OpenBao: OpenBao is sealed for more than twice
# the runner's max.poll.interval.ms while records keep arriving. The runner must pause
# (nothing reaches the sink, nothing is dead-lettered), stay in its consumer group (no
# rebalance, which would repeat records), and deliver everything exactly once after the
# unseal. Meanwhile the admin listener must say so: /health/ready turns 503 naming the
# seal and 200 again after it, and /metrics (parsed by the Prometheus Python client) counts
# exactly what moved, in agreement with the runner's final progress line.
set -euo pipefail
source "$(dirname "$0")/../../demos/lib/stack.sh"

N=3000
POLL_INTERVAL_MS=10000
WORK=$(mktemp -d -t kafka-transit-outage.XXXXXX)
stack_init
start_kafka
start_openbao
create_topics payments.raw:3 payments.protected:3 payments.raw.dlq
vault_write transit/keys/payments '{}'

write_pipeline "$WORK/encrypt.toml" payments.raw payments.protected encrypt-value payments 'batch_size = 100'
source_properties "$WORK/encrypt.toml" '"session.timeout.ms" = "6000"' \
  "\"max.poll.interval.ms\" = \"$POLL_INTERVAL_MS\""
ADMIN_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN="http://127.0.0.1:$ADMIN_PORT"
cat >>"$WORK/encrypt.toml" <<TOML

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
vault_check_interval = "500ms"
TOML
scrape() { python3 "$REPO_ROOT/demos/lib/scrape.py" "$@"; }
probe() { scrape status "$ADMIN" "$1"; } # prints "STATUS BODY"
metric() { scrape metrics "$ADMIN" | awk -v s="$1" '$1 == s { print $2 }'; }
ready_is() { [ "$(probe /health/ready | cut -d' ' -f1)" = "$1" ]; }
# librdkafka reports lag every statistics.interval.ms (pipeline.progress_interval, 2 s).
lag_is_zero() {
  scrape metrics "$ADMIN" | awk '/^kafka_transit_consumer_lag\{/ { n++; if ($2 != 0) bad = 1 } END { exit !(n == 3 && !bad) }'
}
"$KAFKA_TRANSIT" --log-format json run --config "$WORK/encrypt.toml" >"$WORK/runner.log" 2>&1 &
runner=$!
STACK_PIDS+=("$runner")
wait_for 60 "the runner's partitions" grep -q '"source partitions assigned"' "$WORK/runner.log"

produce() { # FROM COUNT
  python3 - "$KAFKA_BOOTSTRAP" "$1" "$2" <<'PY'
import sys
from confluent_kafka import Producer
bootstrap, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
for i in range(start, start + count):
    producer.produce("payments.raw", key=f"payment-{i:05d}", value=f"PLAINTEXT-PAYMENT-{i:05d}")
assert producer.flush(60) == 0
PY
}
produce 0 1000
wait_for_keys payments.protected 1000 60
wait_for 30 "/health/ready to answer 200" ready_is 200

openbao_seal
sealed_at=$SECONDS
say "OpenBao sealed; $((N - 1000)) more records arrive during the outage"
produce 1000 $((N - 1000))
outage=$((POLL_INTERVAL_MS * 25 / 10000))
sleep "$outage"
during=$(count_distinct_keys payments.protected)
[ "$during" -eq 1000 ] || fail "$during records reached the sink while Vault was sealed (expected 1000)"
ready=$(probe /health/ready)
[[ $ready == '503 {"not_ready":["vault: sealed"],"ready":false}' ]] \
  || fail "while sealed, /health/ready answered: $ready"
[ "$(probe /health/live | cut -d' ' -f1)" = 200 ] || fail "waiting for Vault made /health/live fail"
[ "$(metric kafka_transit_ready)" = 0 ] || fail "kafka_transit_ready is not 0 while Vault is sealed"
[ "$(metric kafka_transit_records_produced_total)" = 1000 ] \
  || fail "/metrics counts $(metric kafka_transit_records_produced_total) records produced while sealed (expected 1000)"
say "while sealed: /health/ready $ready; /health/live 200"
openbao_unseal
say "OpenBao unsealed after $((SECONDS - sealed_at))s (max.poll.interval.ms = $POLL_INTERVAL_MS)"

wait_for_keys payments.protected "$N" 120
wait_for 30 "/health/ready to answer 200 after the unseal" ready_is 200
wait_for 30 "/metrics to report lag 0 on every partition" lag_is_zero
scrape metrics "$ADMIN" "$WORK/metrics.txt" >"$WORK/samples.txt"
kill -TERM "$runner"
wait "$runner" || fail "the runner did not exit 0 on SIGTERM (log: $WORK/runner.log)"
python3 - "$WORK/runner.log" <<'PY' || fail "see above (log: $WORK/runner.log)"
import json, sys
messages = [json.loads(line)["fields"].get("message", "") for line in open(sys.argv[1], encoding="utf-8")]
stop = next(i for i, m in enumerate(messages) if m.startswith("stop requested"))
retries = sum(1 for m in messages if m.startswith("batch not transformed"))
assert retries > 0, "the runner never waited for Vault: the outage was not tested"
assert "source partitions revoked" not in messages[:stop], "the runner lost its partitions during the outage"
print(f"   the batch waited through {retries} retries; no partition was revoked before the stop")
PY
python3 - "$WORK/runner.log" "$WORK/samples.txt" "$N" <<'PY' || fail "/metrics disagrees (log: $WORK/runner.log, scrape: $WORK/metrics.txt)"
import json, sys
log, samples, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
final = next(json.loads(l)["fields"] for l in open(log, encoding="utf-8") if '"final"' in l)
scraped = {}
for line in open(samples, encoding="utf-8"):
    series, value = line.rsplit(" ", 1)
    scraped[series] = float(value)
expect = {
    "kafka_transit_records_consumed_total": n,
    "kafka_transit_records_produced_total": n,
    "kafka_transit_ready": 1,
}
for series, value in expect.items():
    assert scraped.get(series) == value, f"{series} = {scraped.get(series)}, expected {value}"
assert sum(v for s, v in scraped.items() if s.startswith("kafka_transit_records_dead_lettered_total")) == 0
# The progress line reads the same counters (nothing moved between scrape and stop).
for field, series in [("records_in", "kafka_transit_records_consumed_total"),
                      ("records_out", "kafka_transit_records_produced_total"),
                      ("batch_retries", "kafka_transit_batch_retries_total")]:
    assert final[field] == scraped[series], f"final log {field}={final[field]}, /metrics {series}={scraped[series]}"
assert scraped["kafka_transit_batch_retries_total"] > 0
assert scraped['kafka_transit_vault_requests_total{operation="encrypt",outcome="success"}'] > 0
assert scraped['kafka_transit_vault_requests_total{operation="health",outcome="error"}'] > 0, "no probe saw the seal"
lags = {s: v for s, v in scraped.items() if s.startswith("kafka_transit_consumer_lag{")}
assert len(lags) == 3 and set(lags.values()) == {0}, lags
assert scraped["kafka_transit_batch_duration_seconds_count"] == scraped["kafka_transit_batches_committed_total"]
print(f"   /metrics: {n} consumed and produced, {int(scraped['kafka_transit_batch_retries_total'])} batch retries, lag 0 on 3 partitions; agrees with the final log line")
PY
python3 "$REPO_ROOT/.ci/check-deploy.py" "$WORK/metrics.txt" || fail "deploy/ and the binary's /metrics disagree"
grep -E '^kafka_transit_(records_(consumed|produced)_total|batch_retries_total|vault_requests_total\{operation="encrypt"|consumer_lag|ready|policy_info)' "$WORK/metrics.txt" | head -20 >&2
admin_kcat -C -t payments.protected -o beginning -e -q -f '%k\t%s\n' 2>/dev/null >"$WORK/protected.tsv"
deliveries=$(wc -l <"$WORK/protected.tsv")
[ "$deliveries" -eq "$N" ] || fail "$deliveries deliveries for $N records: a rebalance repeated records"
if grep -q 'PLAINTEXT-PAYMENT' "$WORK/protected.tsv"; then fail "plaintext reached the sink"; fi
[ "$(count_distinct_keys payments.raw.dlq)" -eq 0 ] || fail "records were dead-lettered during the outage"
say "vault outage: $N records, $deliveries deliveries, no rebalance, readiness 503 while sealed then 200: passed"

"""Tenants' application producing until stopped: tenant_stream.py BOOTSTRAP TOPIC RATE ACKED.tsv PREFIX TENANT...

Sends JSON records with an SSN (`{"id":17,"name":"...","ssn":"123-45-6789","amount":1700}`)
to TOPIC at RATE records per second, each keyed PREFIX-<n> and with a `tenant` header
naming the next of the TENANTs in turn, until SIGTERM or SIGINT. Idempotent producer,
ordinary batching (linger.ms 20); a broker that goes away for a while only delays
acknowledgements (message.timeout.ms stays librdkafka's 300 s).

Each record the cluster acknowledged is appended to ACKED.tsv as key<TAB>tenant<TAB>value:
what a test may expect downstream. On stop it flushes, prints how many it sent and exits 1
if any record was not acknowledged. KCAT_CONFIG: see kafka_config.py.
"""
import json
import signal
import sys
import time

from confluent_kafka import Producer

from kafka_config import client_config


def value(i: int, tenant: str) -> str:
    ssn = f"{100 + i % 800:03d}-{10 + i // 800 % 90:02d}-{1000 + i % 9000:04d}"
    record = {"id": i, "tenant": tenant, "name": f"Customer {i}", "ssn": ssn, "amount": i * 100}
    return json.dumps(record, separators=(",", ":"))


def main() -> None:
    bootstrap, topic, rate, acked_path, prefix = sys.argv[1:6]
    tenants, rate = sys.argv[6:], float(rate)
    if not tenants:
        sys.exit(__doc__)
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = []
    acked = open(acked_path, "w", encoding="utf-8")

    def delivered(tenant):
        # Delivery reports carry no headers: the tenant comes with the callback.
        def report(error, message):
            if error is not None:
                failed.append(f"{message.key().decode()}: {error}")
            else:
                acked.write(f"{message.key().decode()}\t{tenant}\t{message.value().decode()}\n")
        return report

    producer = Producer({**client_config(bootstrap), "linger.ms": 20, "enable.idempotence": True})
    started = time.monotonic()
    sent = 0
    while not stopping:
        tenant = tenants[sent % len(tenants)]
        producer.produce(topic, key=f"{prefix}-{sent:06d}", value=value(sent, tenant),
                         headers=[("tenant", tenant.encode())], on_delivery=delivered(tenant))
        sent += 1
        producer.poll(0)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    left = producer.flush(60)
    acked.close()
    print(f"produced {sent} records; {left} unacknowledged, {len(failed)} failed")
    if left or failed:
        print("\n".join(failed[:10]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

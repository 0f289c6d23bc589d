"""An application producing at a steady rate: produce_at_rate.py BOOTSTRAP TOPIC RECORDS.tsv RATE

Sends the key<TAB>value lines of RECORDS.tsv to TOPIC at RATE records per second, with
an idempotent producer and ordinary batching (linger.ms 20), and prints how many it
sent once all were acknowledged. KCAT_CONFIG: see kafka_config.py.
"""
import sys
import time

from confluent_kafka import Producer

from kafka_config import client_config


def main() -> None:
    bootstrap, topic, path, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    producer = Producer({**client_config(bootstrap), "linger.ms": 20, "enable.idempotence": True})
    started = time.monotonic()
    sent = 0
    for line in open(path, encoding="utf-8"):
        key, _, value = line.rstrip("\n").partition("\t")
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
        sent += 1
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    assert producer.flush(60) == 0, "records left unsent"
    print(f"produced {sent} records")


if __name__ == "__main__":
    main()

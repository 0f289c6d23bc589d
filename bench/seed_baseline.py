#!/usr/bin/env python3
"""The seed's approach, for comparison: an application that encrypts each record itself,
one Vault transit/encrypt call per record, then produces the ciphertext to Kafka.

    python3 bench/seed_baseline.py --bootstrap HOST:PORT --topic T --records 2000

VAULT_ADDR and VAULT_TOKEN name the server (transit mounted at transit/). Prints one JSON
line: records, seconds, records_per_second, mb_per_second (of plaintext values).
"""
import argparse
import base64
import json
import os
import time

import requests
from confluent_kafka import Producer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--key", default="bench", help="transit key name")
    args = parser.parse_args()

    address = os.environ["VAULT_ADDR"].rstrip("/")
    # One kept-alive connection, as a reasonable application would use.
    session = requests.Session()
    session.headers["X-Vault-Token"] = os.environ["VAULT_TOKEN"]
    url = f"{address}/v1/transit/encrypt/{args.key}"
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(error)

    # The same JSON values as the Rust harness produces.
    def value(i):
        head = f'{{"id":{i},"payload":"'.encode()
        return head + b"x" * (args.value_bytes - len(head) - 2) + b'"}'

    started = time.monotonic()
    for i in range(args.records):
        plaintext = base64.b64encode(value(i)).decode()
        response = session.post(url, json={"plaintext": plaintext})
        response.raise_for_status()
        ciphertext = response.json()["data"]["ciphertext"]
        producer.produce(args.topic, key=f"k{i}", value=ciphertext, on_delivery=delivered)
        producer.poll(0)
    remaining = producer.flush(60)
    seconds = time.monotonic() - started
    if remaining or failures:
        raise SystemExit(f"{remaining} undelivered, {len(failures)} failed: {failures[:3]}")
    print(json.dumps({
        "records": args.records,
        "value_bytes": args.value_bytes,
        "seconds": round(seconds, 3),
        "records_per_second": round(args.records / seconds, 1),
        "mb_per_second": round(args.records * args.value_bytes / seconds / 1e6, 3),
    }))


if __name__ == "__main__":
    main()

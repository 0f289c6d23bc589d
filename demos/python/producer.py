"""A plain application producer: writes customer records to Kafka, in the clear.

It uses confluent-kafka and nothing else. The point of the demos is that the
application needs no cryptography, no Vault client and no key: kafka-transit protects
the records after they were written.

    # 20 customer records (name, email, SSN, card number, IBAN) to customers.raw
    python3 producer.py --bootstrap localhost:29092 --topic customers.raw --count 20

    # keep a copy (key<TAB>value per line) to compare with what comes back later
    python3 producer.py --topic customers.raw --count 20 --out originals.tsv

    # keyed by the customer's e-mail, with headers traceparent, user-id and tenant
    # (--out then adds a third column: the headers as JSON, [[name, value], ...])
    python3 producer.py --topic customers.raw --count 20 --keys-and-headers --out originals.tsv

    # large binary records (scanned documents, say) of 1, 8 and 20 MiB; the producer's
    # message.max.bytes must allow the largest one
    python3 producer.py --topic documents.raw --sizes-mib 1 8 20 \
        --message-max-bytes 26214400 --out documents.tsv   # key<TAB>sha256<TAB>size

The bootstrap servers default to $KAFKA_BOOTSTRAP.
"""
import argparse
import hashlib
import json
import os
import sys
import time

from confluent_kafka import Producer

TENANTS = ["tenant-northwind", "tenant-contoso", "tenant-globex"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]


def customer(i: int) -> tuple[str, bytes]:
    """A deterministic customer record full of what must not leak."""
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    value = {
        "id": i,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "ssn": f"{100 + i % 800:03d}-{10 + i % 89:02d}-{1000 + i % 9000:04d}",
        "card": {"number": f"4111{i * 7919:012d}", "exp": "12/29"},
        "iban": f"DE89370400440532{i:06d}",
    }
    return f"customer-{i:05d}", json.dumps(value, separators=(",", ":")).encode()


def personal_key_and_headers(i: int) -> tuple[str, list]:
    """The record key and headers of customer i when they carry personal data too: the
    e-mail as key, and a W3C trace context (not personal), the user id and the tenant as
    headers, in that order (kafka-transit's headers = "seal" keeps traceparent in clear
    and restores the sealed ones after it)."""
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    trace = ((i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835) % (1 << 128)
    headers = [
        ("traceparent", f"00-{trace:032x}-{(trace % (1 << 64)) >> 3:016x}-01"),
        ("user-id", f"user-{i:06d}"),
        ("tenant", TENANTS[i % len(TENANTS)]),
    ]
    return f"{first.lower()}.{last.lower()}{i}@example.com", headers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"),
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=20, help="customer records to write")
    parser.add_argument("--sizes-mib", type=int, nargs="+", metavar="MIB",
                        help="write one random binary record per size instead of customers")
    parser.add_argument("--message-max-bytes", type=int, default=1_000_000,
                        help="librdkafka producer message.max.bytes (default 1000000)")
    parser.add_argument("--keys-and-headers", action="store_true",
                        help="key each customer record by its e-mail and add the headers "
                             "traceparent, user-id and tenant")
    parser.add_argument("--out", help="also write what was produced to this file")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("--bootstrap or $KAFKA_BOOTSTRAP is required")

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "message.max.bytes": args.message_max_bytes,
        # One in-order stream per key, no duplicates on retry: what a careful app does.
        "enable.idempotence": True,
    })
    failures = []

    def delivered(error, message):
        if error is not None:
            failures.append(f"{message.key()!r}: {error}")

    lines, started = [], time.monotonic()
    if args.sizes_mib:
        for mib in args.sizes_mib:
            key, value = f"document-{mib}mib", os.urandom(mib << 20)
            producer.produce(args.topic, key=key, value=value, on_delivery=delivered)
            # Flush per record: a 20 MiB record should not wait behind the others.
            producer.flush(120)
            lines.append(f"{key}\t{hashlib.sha256(value).hexdigest()}\t{len(value)}")
    else:
        for i in range(args.count):
            key, value = customer(i)
            if args.keys_and_headers:
                key, headers = personal_key_and_headers(i)
                producer.produce(args.topic, key=key, value=value, headers=headers, on_delivery=delivered)
                lines.append(f"{key}\t{value.decode()}\t{json.dumps(headers, separators=(',', ':'))}")
            else:
                producer.produce(args.topic, key=key, value=value, on_delivery=delivered)
                lines.append(f"{key}\t{value.decode()}")
    remaining = producer.flush(120)
    if failures or remaining:
        sys.exit(f"producer: {len(failures)} failed, {remaining} undelivered: {failures[:3]}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
    print(f"producer: wrote {len(lines)} records to {args.topic} "
          f"in {time.monotonic() - started:.2f}s (no cryptography in the application)")


if __name__ == "__main__":
    main()

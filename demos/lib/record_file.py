"""Kafka records as JSON lines, byte for byte: one object a line with topic, key, value
(hex, or null), headers ([name, hex or null], in order) and, when read from Kafka,
partition, offset and timestamp. The format 3 matrix (demos/python/matrix.py) and
.ci/e2e/protect-all.sh exchange records this way with the Java, Go and Python readers.

    record_file.py dump BOOTSTRAP TOPIC [read_committed|read_uncommitted] >TOPIC.jsonl
    record_file.py produce BOOTSTRAP FILE [--suffix .raw] [--header NAME=VALUE] [--at-partition]
    record_file.py count BOOTSTRAP TOPIC     # records on TOPIC (read_committed)

`dump` reads every partition from the beginning to where it ended when asked (see
read_topic.py). `produce` sends a file's records in order, each to its topic (plus
--suffix), with an idempotent producer so that order holds within a partition; a
record's partition is the producer's choice (by key) unless --at-partition keeps the
one in the file. --header adds a header in clear to every record (e.g. a marker saying
which line it came from: {line} is replaced by the line's number, from 0).
KCAT_CONFIG: see kafka_config.py.
"""
import json
import sys

from confluent_kafka import Producer

from kafka_config import client_config
from read_topic import read_records


def hx(data):
    return None if data is None else bytes(data).hex()


def unhx(text):
    return None if text is None else bytes.fromhex(text)


def from_message(message) -> dict:
    timestamp = message.timestamp()[1]
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
            "timestamp": timestamp, "key": hx(message.key()), "value": hx(message.value()),
            "headers": [[name, hx(value)] for name, value in (message.headers() or [])]}


def decode(line: dict) -> dict:
    """A line with key, value and header values as bytes (None stays None)."""
    return dict(line, key=unhx(line["key"]), value=unhx(line["value"]),
                headers=[(name, unhx(value)) for name, value in line["headers"]])


def encode(record: dict) -> dict:
    """The reverse of decode."""
    return dict(record, key=hx(record["key"]), value=hx(record["value"]),
                headers=[[name, hx(value)] for name, value in record["headers"]])


def load(path: str) -> list:
    """The records of a JSON lines file (or of a JSON array, as matrix.py's records.json), decoded."""
    text = open(path, encoding="utf-8").read()
    lines = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l]
    return [decode(line) for line in lines]


def save(path: str, records) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(encode(record)) + "\n")


def dump(bootstrap: str, topic: str, isolation: str = "read_committed") -> list:
    return [decode(from_message(m)) for m in read_records(bootstrap, topic, isolation, group="kafka-transit-dump")]


def produce(bootstrap: str, records, suffix: str = "", extra_headers=(), at_partition: bool = False) -> int:
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 8 << 20})
    sent = 0
    for line, record in enumerate(records):
        headers = list(record["headers"]) + [(n, v.replace(b"{line}", str(line).encode())) for n, v in extra_headers]
        kwargs = {"partition": record["partition"]} if at_partition else {}
        producer.produce(record["topic"] + suffix, key=record["key"], value=record["value"], headers=headers,
                         **kwargs)
        producer.poll(0)
        sent += 1
    left = producer.flush(60)
    if left:
        sys.exit(f"{left} of {sent} records were not acknowledged")
    return sent


def main() -> None:
    command, *args = sys.argv[1:] or [""]
    if command == "dump":
        for record in dump(*args[:3]):
            sys.stdout.write(json.dumps(encode(record)) + "\n")
    elif command == "produce":
        bootstrap, path, rest = args[0], args[1], args[2:]
        suffix, headers, at_partition = "", [], False
        while rest:
            option = rest.pop(0)
            if option == "--suffix":
                suffix = rest.pop(0)
            elif option == "--header":
                name, _, value = rest.pop(0).partition("=")
                headers.append((name, value.encode()))
            elif option == "--at-partition":
                at_partition = True
            else:
                sys.exit(f"unknown option {option}\n{__doc__}")
        print(f"produced {produce(bootstrap, load(path), suffix, headers, at_partition)} records")
    elif command == "count":
        print(sum(1 for _ in read_records(args[0], args[1], group="kafka-transit-record-count")))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

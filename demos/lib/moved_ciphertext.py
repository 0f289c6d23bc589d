"""What the sink's operator can do without any key: move a ciphertext to another record.

    moved_ciphertext.py move BOOTSTRAP TOPIC FORGED.json
        Takes TOPIC's first record and the first one with another key, and produces the
        first one's value and headers under the other's key, to TOPIC. Writes the forged
        record (key, value and headers, hex) to FORGED.json and prints what it did.

    moved_ciphertext.py check BOOTSTRAP DEAD_LETTER_TOPIC FORGED.json
        Exits 1 unless DEAD_LETTER_TOPIC holds exactly the forged record, set aside as
        invalid input because its ciphertext failed authentication ("message
        authentication failed"); prints the reason the runner gave.

With bind = ["stream", "key"] every ciphertext authenticates the key of its record, so
the opening pipeline must refuse the forged record (docs/protected-records.md).
"""
import json
import sys

from confluent_kafka import Producer

from kafka_config import client_config
from read_topic import read_records

REASON = "kafka-transit.error"
KIND = "kafka-transit.error.kind"


def short(key: bytes) -> str:
    return f"{key[:17].decode(errors='replace')}… ({len(key)} bytes)"


def move(bootstrap: str, topic: str, out: str) -> None:
    first = other = None
    for message in read_records(bootstrap, topic, group="kafka-transit-moved-ciphertext"):
        if first is None:
            first = message
        elif message.key() != first.key():
            other = message
            break
    if other is None:
        sys.exit(f"moved_ciphertext: {topic} needs two records with different keys")
    producer = Producer(client_config(bootstrap))
    failures = []
    producer.produce(topic, key=other.key(), value=first.value(), headers=first.headers() or [],
                     on_delivery=lambda error, _: failures.append(error) if error else None)
    if producer.flush(30) or failures:
        sys.exit(f"moved_ciphertext: the forged record was not written: {failures}")
    forged = {"key": other.key().hex(), "value": first.value().hex(),
              "headers": [[name, None if v is None else v.hex()] for name, v in first.headers() or []]}
    with open(out, "w", encoding="utf-8") as file:
        json.dump(forged, file)
    print(f"   the value of the record keyed {short(first.key())} written again under the key "
          f"{short(other.key())}, on {topic}")


def check(bootstrap: str, topic: str, forged_path: str) -> None:
    forged = json.load(open(forged_path, encoding="utf-8"))
    letters = list(read_records(bootstrap, topic, group="kafka-transit-moved-ciphertext-check"))
    problems = []
    if len(letters) != 1:
        problems.append(f"{len(letters)} dead letters on {topic}, expected 1")
    for letter in letters:
        headers = {name: (v or b"").decode(errors="replace") for name, v in letter.headers() or []}
        if (letter.key() or b"").hex() != forged["key"] or (letter.value() or b"").hex() != forged["value"]:
            problems.append("a dead letter that is not the forged record")
        if headers.get(KIND) != "invalid-input":
            problems.append(f"{KIND} is {headers.get(KIND)!r}, expected 'invalid-input'")
        if "message authentication failed" not in headers.get(REASON, ""):
            problems.append(f"the reason does not say the ciphertext failed authentication: {headers.get(REASON)!r}")
        print(f"   {topic}: {KIND}={headers.get(KIND)} {REASON}={headers.get(REASON, '')[:160]}")
    for problem in problems:
        print(f"   PROBLEM: {problem}")
    sys.exit(1 if problems else 0)


def main() -> None:
    if len(sys.argv) != 5 or sys.argv[1] not in ("move", "check"):
        sys.exit(__doc__)
    (move if sys.argv[1] == "move" else check)(*sys.argv[2:])


if __name__ == "__main__":
    main()

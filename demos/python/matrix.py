"""The format 3 interoperability matrix, Python's row and column (.ci/e2e/sdk-matrix.sh):
every writer (host, Java, Go, Python) writes the same source records with every option on,
and every reader reads every writer's records back to the source, key, value and headers.

    python3 matrix.py records DIR/records.json       # the source records everyone writes
    python3 matrix.py write DIR/records.json DIR/python.jsonl
    python3 matrix.py read DIR/records.json DIR/*.jsonl
    python3 matrix.py same-keys DIR/*.jsonl          # convergent keys agree across writers
    python3 matrix.py collect DIR/records.json OUT.jsonl DUMP.jsonl...   # the policies' row
    python3 matrix.py opened DIR/records.json OPENED.jsonl... --dead DLQ.jsonl --writers DIR/*.jsonl

`collect` and `opened` are the policies' row and column (kafka-transit's envelope-seal and
envelope-open through Kafka): `collect` puts what envelope-seal wrote to the sink topics
(dumps by demos/lib/record_file.py, each topic in order) in the source records' order;
`opened` checks what envelope-open gave back of every writer's records, each marked by
the header `matrix.from` (file:line, or file:moved for the one moved to another topic,
which must be on the dead-letter topic instead, failing authentication).

Vault: VAULT_ADDR, VAULT_TOKEN (VAULT_CACERT for https); transit keys `customers` and
`customer-ids` (derived, convergent). A written file has one JSON object a line: topic,
key and value (hex, or null), headers ([name, hex or null]).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from envelope_decrypt import EnvelopeError, RecordReader
from transit import Transit
from writer import Writer

# Every option on: record keys encrypted, headers sealed, bound to stream and key, zstd, padded.
OPTIONS = dict(record_keys="encrypt", record_keys_key="customer-ids", headers="seal", keep_headers=["traceparent"],
               bind=["stream", "key"], compression="zstd", pad_to=256)


def source_records() -> list:
    order = json.dumps({"customer": "Ada", "items": [{"sku": "a" * 40, "n": 2}] * 20}).encode()
    return [
        {"topic": "orders", "key": b"customer-1", "value": order,
         "headers": [("traceparent", b"00-4bf92f-01"), ("tenant", b"a"), ("tenant", b"b"), ("flag", None)]},
        {"topic": "orders", "key": None, "value": b"hello, null key", "headers": []},
        {"topic": "orders", "key": b"customer-2", "value": b"", "headers": [("empty", b"")]},
        {"topic": "orders", "key": b"customer-3", "value": b"x" * 100_000, "headers": []},
        {"topic": "payments.eu", "key": b"customer-1", "value": bytes(range(256)),
         "headers": [("caf\u00e9", "\u00e9t\u00e9".encode())]},
        {"topic": "orders", "key": b"customer-4", "value": None, "headers": [("traceparent", b"00-1-01"), ("tenant", b"a")]},
    ]


def to_json(record: dict) -> dict:
    hx = lambda b: None if b is None else bytes(b).hex()  # noqa: E731
    return {"topic": record["topic"], "key": hx(record["key"]), "value": hx(record["value"]),
            "headers": [[n, hx(v)] for n, v in record["headers"]]}


def from_json(record: dict) -> dict:
    hx = lambda s: None if s is None else bytes.fromhex(s)  # noqa: E731
    return {"topic": record["topic"], "key": hx(record["key"]), "value": hx(record["value"]),
            "headers": [(n, hx(v)) for n, v in record["headers"]]}


def transit() -> Transit:
    return Transit(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], verify=os.environ.get("VAULT_CACERT", True))


def expected_after_reading(record: dict) -> dict:
    """What a reader gives back: the kept headers first, then the sealed ones (a tombstone's
    sealed headers are dropped by the writer)."""
    kept = [(n, v) for n, v in record["headers"] if n in OPTIONS["keep_headers"]]
    sealed = [(n, v) for n, v in record["headers"] if n not in OPTIONS["keep_headers"]]
    return dict(record, headers=kept + (sealed if record["value"] is not None else []))


# The runner's stamps on what kafka-transit's envelope-seal wrote, in clear by design
# (docs/policies.md): no source header, and the readers pass them on as they are.
STAMPS = ("kafka-transit.policy", "kafka-transit.key")
MARKER = "matrix.from"


def without_stamps(headers: list) -> list:
    return [(n, v) for n, v in headers if n not in STAMPS]


def collect(records: list, dumps: list) -> list:
    """The sink records of the source records, in their order: each topic's dump is in the
    order the runner wrote it (one partition each), which is the source order."""
    by_topic = {}
    for dump in dumps:
        for record in dump:
            by_topic.setdefault(record["topic"], []).append(record)
    out = []
    for source in records:
        written = by_topic.get(source["topic"], [])
        assert written, f"fewer records on {source['topic']} than the source has"
        record = written.pop(0)
        out.append({k: record[k] for k in ("topic", "key", "value", "headers")})
    left = {t: len(r) for t, r in by_topic.items() if r}
    assert not left, f"more records on the sink than the source has: {left}"
    return out


def opened(records: list, outputs: list, dead: list, writers: list) -> None:
    """Every writer's records, as envelope-open gave them back (marked by MARKER), equal
    to the source as a reader gives it; each writer's moved record dead-lettered."""
    got = {}
    for record in outputs:
        marks = [v for n, v in record["headers"] if n == MARKER]
        if marks:
            assert marks[0] not in got, f"{marks[0].decode()} opened twice"
            got[marks[0]] = record
    for path in writers:
        name = os.path.basename(path)
        for index, source in enumerate(records):
            mark = f"{name}:{index}".encode()
            assert mark in got, f"{name}: record {index} was not opened (see the dead-letter topic)"
            record = got.pop(mark)
            headers = [(n, v) for n, v in record["headers"] if n != MARKER]
            want = expected_after_reading(source)
            assert (record["key"], record["value"], headers) == (want["key"], want["value"], want["headers"]), \
                f"{name}: record {index} on {source['topic']} opened differently"
        moved = [d for d in dead if (MARKER, f"{name}:moved".encode()) in d["headers"]]
        assert len(moved) == 1, f"{name}: {len(moved)} moved records dead-lettered, expected 1"
        headers = dict(moved[0]["headers"])
        reason = headers.get("kafka-transit.error", b"").decode()
        assert headers.get("kafka-transit.error.kind") == b"invalid-input" and \
            "message authentication failed" in reason, f"{name}: the moved record failed for {reason!r}"
        print(f"envelope-open read {len(records)} records of {name}; a moved one was dead-lettered: {reason[:120]}")
    assert not got, f"records opened that no writer wrote: {sorted(got)[:3]}"


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "records":
        with open(args[0], "w", encoding="utf-8") as out:
            json.dump([to_json(r) for r in source_records()], out, indent=1)
        return
    if command == "write":
        records = [from_json(r) for r in json.load(open(args[0], encoding="utf-8"))]
        writer = Writer(transit(), "customers", **OPTIONS)
        with open(args[1], "w", encoding="utf-8") as out:
            for r in records:
                key, value, headers = writer.seal(r["topic"], r["key"], r["value"], r["headers"])
                out.write(json.dumps(to_json({"topic": r["topic"], "key": key, "value": value, "headers": headers}))
                          + "\n")
        writer.close()
        print(f"python wrote {len(records)} records ({writer.data_keys_minted} data key)")
        return
    if command == "read":
        records = [from_json(r) for r in json.load(open(args[0], encoding="utf-8"))]
        reader = RecordReader(transit(), key="customers", record_keys_key="customer-ids",
                              require_binding=["stream", "key"])
        for path in args[1:]:
            written = [from_json(json.loads(line)) for line in open(path, encoding="utf-8")]
            assert len(written) == len(records), f"{path}: {len(written)} records, expected {len(records)}"
            for source, sink in zip(records, written):
                key, value, headers = reader.read(sink["topic"], sink["key"], sink["value"], sink["headers"])
                headers = without_stamps(headers)
                want = expected_after_reading(source)
                assert (key, value, headers) == (want["key"], want["value"], want["headers"]), \
                    f"{path}: record on {source['topic']} read back differently"
            moved = written[0]
            try:
                reader.read("payments.eu", moved["key"], moved["value"], moved["headers"])
            except EnvelopeError as error:
                assert error.kind == "authentication", f"{path}: a moved record failed on {error.kind}"
            else:
                raise AssertionError(f"{path}: a record moved to another topic was read")
            print(f"python read {len(written)} records of {os.path.basename(path)}; a moved one was refused")
        return
    if command == "same-keys":
        files = {path: [json.loads(line) for line in open(path, encoding="utf-8")] for path in args}
        first, *others = files.values()
        for path, written in zip(list(files)[1:], others):
            assert [r["key"] for r in written] == [r["key"] for r in first], \
                f"{path}: sink keys differ from {list(files)[0]}'s (convergent encryption should agree)"
        print(f"the {len(files)} writers produced the same sink keys (convergent encryption, one partitioning)")
        return
    if command == "collect":
        import record_file  # demos/lib

        records = [from_json(r) for r in json.load(open(args[0], encoding="utf-8"))]
        written = collect(records, [record_file.load(path) for path in args[2:]])
        with open(args[1], "w", encoding="utf-8") as out:
            for record in written:
                out.write(json.dumps(to_json(record)) + "\n")
        print(f"kafka-transit's envelope-seal wrote {len(written)} records (through Kafka)")
        return
    if command == "opened":
        import record_file  # demos/lib

        records = [from_json(r) for r in json.load(open(args[0], encoding="utf-8"))]
        outputs = args[1:args.index("--dead")]
        dead = args[args.index("--dead") + 1]
        writers = args[args.index("--writers") + 1:]
        opened(records, [r for path in outputs for r in record_file.load(path)], record_file.load(dead), writers)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()

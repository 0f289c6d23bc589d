"""The format 3 interoperability matrix, Python's row and column (.ci/e2e/sdk-matrix.sh):
every writer (host, Java, Go, Python) writes the same source records with every option on,
and every reader reads every writer's records back to the source, key, value and headers.

    python3 matrix.py records DIR/records.json       # the source records everyone writes
    python3 matrix.py write DIR/records.json DIR/python.jsonl
    python3 matrix.py read DIR/records.json DIR/*.jsonl
    python3 matrix.py same-keys DIR/*.jsonl          # convergent keys agree across writers

Vault: VAULT_ADDR, VAULT_TOKEN (VAULT_CACERT for https); transit keys `customers` and
`customer-ids` (derived, convergent). A written file has one JSON object a line: topic,
key and value (hex, or null), headers ([name, hex or null]).
"""
import json
import os
import sys

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
    sys.exit(__doc__)


if __name__ == "__main__":
    main()

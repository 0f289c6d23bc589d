"""An authorised consumer: reads protected records from Kafka and decrypts them with
Vault, using hvac (and, for envelopes, `cryptography`). No kafka-transit code.

What it understands, per record value:

* `vault:vN:...` (encrypt-value): the value is a Vault transit ciphertext; one
  `transit/decrypt` batch request per key gives the plaintext back;
* JSON with `vault:vN:...` fields (encrypt-fields, with --fields): every string field
  that is a Vault ciphertext is decrypted and replaced by the JSON value it encoded;
* a binary envelope (envelope-seal): the data key is unwrapped with `transit/decrypt`
  and the record opened with AES-256-GCM (envelope_decrypt.py, next to this file);
* a format 3 record (docs/protected-records.md: it carries `kafka-transit.protection`),
  whole values only: key, value and headers back through envelope_decrypt.RecordReader
  (transit.py's plain HTTP calls, since the ciphertexts are bound to their topic and key
  with Vault's `associated_data`); `--record-keys-key` names the transit key of encrypted
  record keys. A record that does not open (moved to another key or topic, tampered) is
  refused and counted, never shown; `--expect-refused N` says how many must be.

The transit key is taken from the record's `kafka-transit.key` header, else --key; a
header that is not a transit key name is refused before any Vault request.

    export VAULT_ADDR=http://localhost:8200 VAULT_TOKEN=root
    python3 consumer.py --bootstrap localhost:29092 --topic customers.protected --count 20
    python3 consumer.py --topic customers.fields --count 20 --fields
    python3 consumer.py --topic documents.sealed --count 1 --expect-sha256 documents.tsv

--expect FILE (key<TAB>value lines, as producer.py --out writes them; a third column,
the headers as JSON, is compared with a format 3 record's restored headers) and
--expect-sha256 FILE (key<TAB>sha256[<TAB>size]) make it exit non-zero unless every
decrypted record equals its original (as JSON objects with --fields, since field
encryption re-serialises the document; byte for byte otherwise).
"""
import argparse
import base64
import hashlib
import json
import os
import sys
import time

import hvac
import hvac.exceptions
from confluent_kafka import Consumer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from envelope_decrypt import (  # noqa: E402
    FORMAT_VERSIONS, PROTECTION_HEADER, EnvelopeError, RecordReader, Unwrapper, key_name_problem, read_topic,
)
from transit import Transit  # noqa: E402

VAULT_PREFIX = b"vault:v"
# Ciphertexts per transit/decrypt request: OpenBao refuses request bodies of more than
# 1000 JSON strings (its listener's max_request_json_strings), two per item.
BATCH = 400


class Decryptor:
    def __init__(self, client, mount: str, default_key: str):
        self.client, self.mount, self.default_key = client, mount, default_key
        self.envelopes = Unwrapper(client, mount)
        self.vault_requests = 0

    def transit_decrypt(self, key: str, ciphertexts: list[str]) -> list[bytes]:
        """Vault's transit/decrypt, batched: what any Vault client can do."""
        plaintexts = []
        for start in range(0, len(ciphertexts), BATCH):
            chunk = ciphertexts[start : start + BATCH]
            response = self.client.secrets.transit.decrypt_data(
                name=key,
                batch_input=[{"ciphertext": c} for c in chunk],
                mount_point=self.mount,
            )
            self.vault_requests += 1
            for item in response["data"]["batch_results"]:
                if item.get("error"):
                    raise RuntimeError(f"Vault refused to decrypt with key {key}: {item['error']}")
                plaintexts.append(base64.b64decode(item["plaintext"]))
        return plaintexts

    def decrypt_values(self, messages) -> list[bytes]:
        """Whole values: Vault ciphertexts (batched per key) or envelopes."""
        out: list = [None] * len(messages)
        by_key: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            value = message.value() or b""
            if value.startswith(VAULT_PREFIX):
                by_key.setdefault(key_of(message, self.default_key), []).append(index)
            elif value[:1] and value[0] in FORMAT_VERSIONS:
                out[index] = self.envelopes.open(value)
            else:
                raise RuntimeError(
                    f"record {message.key()!r} is neither a Vault ciphertext nor an envelope"
                    " (plaintext? field-level records need --fields)"
                )
        for key, indexes in by_key.items():
            texts = [messages[i].value().decode() for i in indexes]
            for i, plaintext in zip(indexes, self.transit_decrypt(key, texts)):
                out[i] = plaintext
        return out

    def decrypt_fields(self, messages) -> list[bytes]:
        """JSON values: every `vault:v` string field, wherever it is, batched per key."""
        docs = [json.loads(m.value()) for m in messages]
        pending: dict[str, list[tuple]] = {}  # key -> [(container, slot, ciphertext)]

        def walk(node, key):
            slots = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
            for slot, child in slots:
                if isinstance(child, str) and child.startswith("vault:v"):
                    pending.setdefault(key, []).append((node, slot, child))
                else:
                    walk(child, key)

        for message, doc in zip(messages, docs):
            walk(doc, key_of(message, self.default_key))
        for key, places in pending.items():
            plaintexts = self.transit_decrypt(key, [c for _, _, c in places])
            for (node, slot, _), plaintext in zip(places, plaintexts):
                node[slot] = json.loads(plaintext)  # each field was encrypted as JSON text
        return [json.dumps(doc, separators=(",", ":")).encode() for doc in docs]


def is_format3(message) -> bool:
    return any(name == PROTECTION_HEADER for name, _ in message.headers() or [])


def read_format3(reader: RecordReader, message):
    """(key, value, headers) as the application wrote them, or an EnvelopeError. The
    runner's stamps (`kafka-transit.*`) are dropped, as kafka-transit's own opening
    policies drop them."""
    key, value, headers = reader.read(message.topic(), message.key(), message.value(), message.headers() or [])
    return key, value, [(name, v) for name, v in headers if not name.startswith("kafka-transit.")]


def headers_json(headers) -> str:
    """Headers as producer.py --out writes them."""
    return json.dumps([[name, None if v is None else v.decode(errors="replace")] for name, v in headers],
                      separators=(",", ":"))


def key_of(message, default: str) -> str:
    for name, value in message.headers() or []:
        if name == "kafka-transit.key" and value:
            # The header is the record's, and the key name is the path of the Vault request
            # (with "../../sys/seal", hvac would POST to /v1/sys/seal with our token).
            reason = key_name_problem(value)
            if reason:
                raise RuntimeError(f"a record's kafka-transit.key header is not a transit key name ({reason})")
            return value.decode()
    return default


def read_all(bootstrap: str, topic: str, idle: float):
    """Every record from the beginning, until none has arrived for `idle` seconds.

    (Watermark offsets would be quicker, but not every Kafka-compatible broker reports
    them exactly; waiting for quiet works everywhere.)
    """
    from confluent_kafka import TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "demo-consumer",
        "enable.auto.commit": False,
        # Only records of committed transactions (kafka-transit's exactly-once mode
        # leaves aborted ones in the log). librdkafka's default, said out loud: the Java
        # client's default is read_uncommitted.
        "isolation.level": "read_committed",
        "fetch.max.bytes": 104857600,
        "max.partition.fetch.bytes": 104857600,
        "receive.message.max.bytes": 105000000,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            sys.exit(f"consumer: topic {topic}: {metadata.error.str()}")
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        messages, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < idle:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
                quiet_since = time.monotonic()
        return messages
    finally:
        consumer.close()


def show(plaintext: bytes, width: int) -> str:
    try:
        text = plaintext.decode()
        if text.isprintable():
            return text if len(text) <= width else text[:width] + "…"
    except UnicodeDecodeError:
        pass
    return f"<{len(plaintext):,} bytes, sha256 {hashlib.sha256(plaintext).hexdigest()[:16]}…>"


def load_expected(args) -> dict:
    expected = {}
    for path, kind in ((args.expect, "value"), (args.expect_sha256, "sha256")):
        if path:
            for line in open(path, encoding="utf-8"):
                columns = line.rstrip("\n").split("\t")
                headers = columns[2] if kind == "value" and len(columns) > 2 else None
                expected[columns[0]] = (kind, columns[1], headers)
    return expected


def matches(kind: str, want: str, got: bytes, fields: bool) -> bool:
    if kind == "sha256":
        return hashlib.sha256(got).hexdigest() == want
    if fields:
        return json.loads(got) == json.loads(want)
    return got == want.encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"),
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int,
                        help="records to read from the beginning (default: all, until "
                             "none arrives for --idle seconds)")
    parser.add_argument("--idle", type=float, default=3.0, help="see --count (default 3)")
    parser.add_argument("--fields", action="store_true",
                        help="values are JSON with field-level ciphertexts (encrypt-fields)")
    parser.add_argument("--key", default="customers",
                        help="transit key when a record has no kafka-transit.key header")
    parser.add_argument("--mount", default="transit", help="transit mount path")
    parser.add_argument("--record-keys-key",
                        help="transit key of encrypted record keys (format 3, record_keys = \"encrypt\")")
    parser.add_argument("--expect-refused", type=int, default=0, metavar="N",
                        help="format 3 records that must fail to open (default 0)")
    parser.add_argument("--expect", help="key<TAB>value file the plaintexts must equal")
    parser.add_argument("--expect-sha256", help="key<TAB>sha256 file the plaintexts must hash to")
    parser.add_argument("--show", type=int, default=5, help="print the first N records (default 5)")
    parser.add_argument("--width", type=int, default=110, help="truncate printed values")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("--bootstrap or $KAFKA_BOOTSTRAP is required")
    for name in ("VAULT_ADDR", "VAULT_TOKEN"):
        if not os.environ.get(name):
            parser.error(f"${name} must be set")
    if key_name_problem(args.key.encode()):
        parser.error(f"--key: not a transit key name ({key_name_problem(args.key.encode())})")

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    decryptor = Decryptor(client, args.mount, args.key)
    if args.count is None:
        messages = read_all(args.bootstrap, args.topic, args.idle)
    else:
        messages = read_topic(args.bootstrap, args.topic, args.count)
        if len(messages) < args.count:
            sys.exit(f"consumer: only {len(messages)} of {args.count} records on {args.topic}")

    started = time.monotonic()
    # Format 3 records (whole values) one by one through the reference reader; the
    # others batched per transit key as before.
    transit = Transit(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], mount=args.mount)
    reader = RecordReader(transit, key=args.key, record_keys_key=args.record_keys_key)
    format3 = [] if args.fields else [m for m in messages if is_format3(m)]
    others = [m for m in messages if args.fields or not is_format3(m)]
    records, refused = [], []
    try:
        plaintexts = (decryptor.decrypt_fields if args.fields else decryptor.decrypt_values)(others)
        records += [(m.key() or b"", p, None) for m, p in zip(others, plaintexts)]
        for message in format3:
            try:
                records.append(read_format3(reader, message))
            except EnvelopeError as error:
                if error.kind in ("config", "vault"):
                    raise
                refused.append(f"{(message.key() or b'')[:20].decode(errors='replace')}…: {error}")
    except (RuntimeError, ValueError, EnvelopeError, hvac.exceptions.VaultError) as error:
        sys.exit(f"consumer: {error}")
    finally:
        reader.close()
    elapsed = time.monotonic() - started

    expected, mismatches = load_expected(args), []
    for index, (key, plaintext, headers) in enumerate(records):
        key = (key or b"").decode()
        if index < args.show:
            shown_headers = "" if headers is None else f"{show(headers_json(headers).encode(), args.width)} | "
            print(f"   {key} | {shown_headers}{show(plaintext, args.width)}")
        if expected:
            kind, want, want_headers = expected.get(key, ("missing", "", None))
            if (kind == "missing" or not matches(kind, want, plaintext, args.fields)
                    or (headers is not None and want_headers is not None and headers_json(headers) != want_headers)):
                mismatches.append(key)
    if len(records) > args.show:
        print(f"   … and {len(records) - args.show} more")
    for reason in refused:
        print(f"   refused {reason}")
    requests = decryptor.vault_requests + decryptor.envelopes.vault_requests + transit.requests
    print(f"consumer: decrypted {len(records)} records from {args.topic} with {requests} "
          f"Vault request(s) in {elapsed:.2f}s"
          + (", all equal to the originals" if expected and not mismatches else "")
          + (f"; refused {len(refused)}" if refused else ""))
    if mismatches:
        sys.exit(f"consumer: {len(mismatches)} records differ from the originals, e.g. {mismatches[:3]}")
    if len(refused) != args.expect_refused:
        sys.exit(f"consumer: {len(refused)} records refused, expected {args.expect_refused}")


if __name__ == "__main__":
    main()

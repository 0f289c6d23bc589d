"""Reference decryptor for kafka-transit envelopes (docs/envelope-format.md).

No kafka-transit code: the data key is unwrapped by Vault's transit/decrypt (through
hvac) and the record is opened with AES-256-GCM from `cryptography`. It shows that any
language with a Vault client and an AES-GCM library can read what kafka-transit wrote.

    # check the published test vectors (no Vault, no Kafka)
    python3 envelope_decrypt.py vectors docs/envelope-test-vectors.json

    # read envelopes from a topic, unwrap data keys with Vault (VAULT_ADDR, VAULT_TOKEN)
    python3 envelope_decrypt.py topic --bootstrap 127.0.0.1:9092 --topic customers.sealed \
        --count 100 [--mount transit] [--expect records.tsv] [--show 3]
"""
import argparse
import base64
import hashlib
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Version 2 is written; version 1 (whose tag also covers the wrapped key) is still read.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)
NONCE_LEN = 12
TAG_LEN = 16
# The longest transit key name (and Kafka topic name) kafka-transit accepts.
MAX_KEY_NAME_LEN = 249
KEY_NAME_CHARACTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class EnvelopeError(Exception):
    """A value that is not a readable envelope. `kind` is what failed, as the test vectors'
    `expect` names it: "version", "truncated" or "key name" ("malformed" otherwise)."""

    def __init__(self, message: str, kind: str = "malformed"):
        super().__init__(message)
        self.kind = kind


def key_name_problem(name: bytes):
    """Why `name` is not a transit key name (1 to 249 of A-Z a-z 0-9 . _ -, not "." or
    "..", the one rule of kafka-transit), or None if it is one. A key name read from a
    record becomes the path of a Vault request (transit/decrypt/<key name>; hvac formats it
    in as it is, and ".." climbs, "/" nests), so any other name must be refused before
    asking Vault, without repeating it: it is record data."""
    if not name:
        return "it is empty"
    if len(name) > MAX_KEY_NAME_LEN:
        return "it is longer than 249 characters"
    if name in (b".", b".."):
        return "'.' and '..' are not names"
    if not KEY_NAME_CHARACTERS.issuperset(name):
        return "only letters, digits, '.', '_' and '-' are allowed"
    return None


def check_key_name(name: bytes) -> str:
    """An envelope's key name as text, if it is a transit key name (see key_name_problem)."""
    reason = key_name_problem(name)
    if reason:
        raise EnvelopeError(f"not a kafka-transit envelope: the key name is not a transit key name ({reason})",
                            "key name")
    return name.decode("ascii")


def parse(envelope: bytes):
    """Returns (key_name, wrapped_key, authenticated, nonce, ciphertext_and_tag), where
    `authenticated` is the part of the header the tag covers."""
    if not envelope:
        raise EnvelopeError("truncated: an empty value", "truncated")
    if envelope[0] not in FORMAT_VERSIONS:
        raise EnvelopeError("not a kafka-transit envelope (unknown format version)", "version")
    at = 1
    fields, ends = [], []
    for what in ("key name", "wrapped key"):
        if len(envelope) < at + 2:
            raise EnvelopeError(f"truncated in the {what}", "truncated")
        (length,) = struct.unpack_from(">H", envelope, at)
        if len(envelope) < at + 2 + length:
            raise EnvelopeError(f"truncated in the {what}", "truncated")
        field = envelope[at + 2 : at + 2 + length]
        if what == "key name":
            fields.append(check_key_name(field))
        else:
            try:
                fields.append(field.decode("ascii"))
            except UnicodeDecodeError:
                raise EnvelopeError("not a kafka-transit envelope: the wrapped key is not text") from None
        at += 2 + length
        ends.append(at)
    # Version 2 leaves the wrapped key out of the tag, so that it can be rewrapped.
    authenticated = envelope[: ends[0] if envelope[0] == 2 else ends[1]]
    rest = envelope[at:]
    if len(rest) < NONCE_LEN + TAG_LEN:
        raise EnvelopeError("truncated before the tag", "truncated")
    return fields[0], fields[1], authenticated, rest[:NONCE_LEN], rest[NONCE_LEN:]


def open_with(data_key: bytes, envelope: bytes, aad: bytes = b"") -> bytes:
    _, _, authenticated, nonce, sealed = parse(envelope)
    return AESGCM(data_key).decrypt(nonce, sealed, authenticated + aad)


class Unwrapper:
    """Unwraps data keys with Vault, once per wrapped key."""

    def __init__(self, client, mount: str):
        self.client, self.mount, self.cache = client, mount, {}
        self.vault_requests = 0

    def data_key(self, key_name: str, wrapped: str) -> bytes:
        if (key_name, wrapped) not in self.cache:
            check_key_name(key_name.encode())  # parse() checked it; other callers may not
            response = self.client.secrets.transit.decrypt_data(
                name=key_name, ciphertext=wrapped, mount_point=self.mount
            )
            self.vault_requests += 1
            self.cache[(key_name, wrapped)] = base64.b64decode(response["data"]["plaintext"])
        return self.cache[(key_name, wrapped)]

    def open(self, envelope: bytes) -> bytes:
        key_name, wrapped, *_ = parse(envelope)
        return open_with(self.data_key(key_name, wrapped), envelope)


class RecordingVault:
    """Stands in for hvac's client in `check_vectors`: records every transit/decrypt it is
    asked for, and answers none (a check that must refuse before asking fails if it asks)."""

    def __init__(self):
        self.asked = []
        self.secrets = self
        self.transit = self

    def decrypt_data(self, name, ciphertext, mount_point="transit", **_):
        self.asked.append(f"{mount_point}/decrypt/{name}")
        raise AssertionError(f"Vault was asked at {mount_point}/decrypt/{name}")


def check_vectors(path: str) -> None:
    vectors = json.load(open(path, encoding="utf-8"))["vectors"]
    for vector in vectors:
        envelope = bytes.fromhex(vector["envelope_hex"])
        key_name, wrapped, *_ = parse(envelope)
        assert key_name == vector["key_name"] and wrapped == vector["wrapped_key"], vector["name"]
        assert envelope[0] == vector["format_version"] in FORMAT_VERSIONS, vector["name"]
        plaintext = open_with(
            bytes.fromhex(vector["data_key_hex"]), envelope, bytes.fromhex(vector["aad_hex"])
        )
        assert plaintext == bytes.fromhex(vector["plaintext_hex"]), vector["name"]
    tampered = json.load(open(path, encoding="utf-8")).get("tampered", [])
    for case in tampered:
        envelope = bytes.fromhex(case["envelope_hex"])
        try:
            open_with(bytes.fromhex(case["data_key_hex"]), envelope, bytes.fromhex(case["aad_hex"]))
        except InvalidTag:
            failed = "authentication"
        except EnvelopeError as error:
            failed = error.kind
        else:
            raise AssertionError(f"tampered envelope opened: {case['name']}")
        assert failed == case["expect"], f"{case['name']}: failed on {failed}, expected {case['expect']}"
        if case["expect"] == "key name":
            # The key name is the path of the Vault request: refused before any is made.
            vault = RecordingVault()
            try:
                Unwrapper(vault, "transit").open(envelope)
            except EnvelopeError as error:
                assert error.kind == "key name", f"{case['name']}: the unwrapper failed on {error.kind}"
            assert vault.asked == [], f"{case['name']}: Vault was asked at {vault.asked}"
    vault = RecordingVault()
    try:
        Unwrapper(vault, "transit").data_key("../../sys/seal", "vault:v1:AAAA")
    except EnvelopeError as error:
        assert error.kind == "key name" and "sys" not in str(error), str(error)
    assert vault.asked == [], f"the unwrapper asked Vault at {vault.asked}"
    print(f"{len(vectors)} test vectors opened correctly, {len(tampered)} tampered ones rejected")


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60.0):
    """Reads `count` records from the beginning of every partition, as an operator would."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "envelope-reference-decryptor",
            "enable.auto.commit": False,
            # Skip records of aborted transactions (exactly-once pipelines).
            "isolation.level": "read_committed",
            "fetch.max.bytes": 104857600,
            "max.partition.fetch.bytes": 104857600,
            "receive.message.max.bytes": 105000000,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
    consumer.close()
    return messages


def decrypt_topic(args) -> None:
    import hvac

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    unwrapper = Unwrapper(client, args.mount)
    messages = read_topic(args.bootstrap, args.topic, args.count)
    if len(messages) < args.count:
        sys.exit(f"only {len(messages)} of {args.count} records on {args.topic}")
    expected = {}
    if args.expect:
        for line in open(args.expect, encoding="utf-8"):
            key, _, value = line.rstrip("\n").partition("\t")
            expected[key] = value.encode()
    mismatches = 0
    for index, message in enumerate(messages):
        plaintext = unwrapper.open(message.value())
        key = (message.key() or b"").decode()
        if index < args.show:
            shown = plaintext[:100].decode(errors="replace")
            print(f"  {key} | {shown}{'…' if len(plaintext) > 100 else ''}")
        if args.expect and expected.get(key) != plaintext:
            mismatches += 1
    if mismatches:
        sys.exit(f"{mismatches} records differ from {args.expect}")
    digest = hashlib.sha256(b"".join(sorted(m.key() or b"" for m in messages))).hexdigest()[:12]
    print(
        f"python reference decryptor: opened {len(messages)} envelopes from {args.topic} "
        f"with {unwrapper.vault_requests} Vault request(s) (keys digest {digest})"
        + (", all identical to the originals" if args.expect else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    vectors = commands.add_parser("vectors", help="check the published test vectors")
    vectors.add_argument("path")
    topic = commands.add_parser("topic", help="decrypt envelopes read from a Kafka topic")
    topic.add_argument("--bootstrap", required=True)
    topic.add_argument("--topic", required=True)
    topic.add_argument("--count", type=int, required=True)
    topic.add_argument("--mount", default="transit")
    topic.add_argument("--expect", help="a key<TAB>value file the plaintexts must match")
    topic.add_argument("--show", type=int, default=0, help="print the first N records")
    args = parser.parse_args()
    if args.command == "vectors":
        check_vectors(args.path)
    else:
        decrypt_topic(args)


if __name__ == "__main__":
    main()

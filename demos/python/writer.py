"""Writes format 3 records in-process (docs/protected-records.md), for applications on a
managed Kafka where no kafka-transit runner sits between producer and cluster: what the
host's `envelope-seal` writes, read by every reader (host, Java, Go, Python).

    from transit import Transit
    from writer import Writer
    writer = Writer(Transit(addr, token), "customers", record_keys="encrypt", record_keys_key="customer-ids",
                    headers="seal", keep_headers=["traceparent"], bind=["stream", "key"],
                    compression="zstd", pad_to=256)
    key, value, headers = writer.seal("orders", b"customer-42", b'{"total": 12}', [("tenant", b"a")])
    producer.produce("orders", key=key, value=value, headers=headers)

Data keys come from Vault's datakey/plaintext, one per `max_records` records or `max_age`
seconds (like the host's [policy.data_keys]); a retired key's bytes are zeroed (the
AES-GCM object of `cryptography` keeps its own copy until it is collected, which Python
cannot wipe). Every record gets a fresh random 96-bit nonce.
"""
import os
import struct
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope_decrypt import (COMMITMENT_LEN, FORMAT_VERSION_3, HEADERS, KEY, KEYS_ENCRYPTED, KEYS_HMAC, LZ4,
                              NONCE_LEN, PADDED, PROTECTION_HEADER, STREAM, ZSTD, EnvelopeError, binding,
                              check_key_name, commitment_of, frame, pad, protection_header_value)

KAFKA_TRANSIT_HEADERS = "kafka-transit."


def check_stream(name: str) -> str:
    """A stream name follows the key name rule (1 to 249 of A-Z a-z 0-9 . _ -)."""
    from envelope_decrypt import key_name_problem

    reason = key_name_problem(name.encode())
    if reason:
        raise ValueError(f"a stream name is 1 to 249 of A-Z a-z 0-9 . _ - ({reason}); set the writer's stream")
    return name


def compress(compression: str, data: bytes) -> bytes:
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.compress(data)
    return data


def seal_envelope(data_key: bytes, key_name: str, wrapped: str, nonce: bytes, flags: int, plaintext: bytes,
                  binding_parts: bytes, compression: str = "none", pad_to: int = 0) -> bytes:
    """A version 3 envelope with a given data key and nonce (the vectors check it)."""
    return envelope(AESGCM(bytes(data_key)), commitment_of(bytes(data_key)), check_key_name(key_name.encode()),
                    wrapped, nonce, flags, body_of(plaintext, flags, compression, pad_to), binding_parts)


def body_of(plaintext: bytes, flags: int, compression: str, pad_to: int) -> bytes:
    body = compress(compression, plaintext)
    return pad(body, pad_to) if flags & PADDED else body


def envelope(cipher, commitment: bytes, key_name: str, wrapped: str, nonce: bytes, flags: int, body: bytes,
             binding_parts: bytes) -> bytes:
    """flags ‖ key name ‖ commitment ‖ wrapped key ‖ nonce ‖ AES-GCM of the body, with the
    authenticated header and the binding parts as associated data."""
    name = key_name.encode()
    assert len(commitment) == COMMITMENT_LEN
    authenticated = bytes([FORMAT_VERSION_3, flags]) + struct.pack(">H", len(name)) + name + commitment
    head = authenticated + struct.pack(">H", len(wrapped)) + wrapped.encode("ascii")
    return head + nonce + cipher.encrypt(nonce, body, authenticated + binding_parts)


class _DataKey:
    def __init__(self, material: bytearray, wrapped: str):
        self.material, self.wrapped = material, wrapped
        self.cipher = AESGCM(bytes(material))
        self.commitment = commitment_of(bytes(material))
        self.created, self.sealed = time.monotonic(), 0

    def wipe(self) -> None:
        self.material[:] = bytes(len(self.material))


class Writer:
    """Seals records as the host's envelope-seal does with format 3 options (see the
    option table in docs/protected-records.md; the names are the same)."""

    def __init__(self, transit, key: str, *, record_keys: str = "keep", record_keys_key: str = None,
                 headers: str = "keep", keep_headers=(), bind=(), stream: str = None, compression: str = "none",
                 pad_to: int = 0, max_records: int = 1_000_000, max_age: float = 3600.0):
        check_key_name(key.encode())
        if record_keys not in ("keep", "encrypt", "hmac"):
            raise ValueError('record_keys is "keep", "encrypt" or "hmac"')
        if record_keys != "keep" and not record_keys_key:
            raise ValueError(f'record_keys = "{record_keys}" needs record_keys_key (a transit key name)')
        if headers not in ("keep", "seal"):
            raise ValueError('headers is "keep" or "seal"')
        if set(bind) - {"stream", "key"}:
            raise ValueError('bind lists "stream" and "key"')
        if compression not in ("none", "zstd", "lz4"):
            raise ValueError('compression is "none", "zstd" or "lz4"')
        if pad_to < 0 or pad_to > 1 << 24:
            raise ValueError("pad_to is a byte count from 0 (off) to 16 MiB")
        self.transit, self.key, self.record_keys, self.record_keys_key = transit, key, record_keys, record_keys_key
        self.seal_headers, self.keep_headers = headers == "seal", list(keep_headers)
        self.stream = None if stream is None else check_stream(stream)
        self.compression, self.pad_to = compression, pad_to
        self.max_records, self.max_age = max(1, max_records), max_age
        self.flags = ((STREAM if "stream" in bind else 0) | (KEY if "key" in bind else 0)
                      | (HEADERS if self.seal_headers else 0) | (PADDED if pad_to else 0)
                      | {"none": 0, "zstd": ZSTD, "lz4": LZ4}[compression]
                      | {"keep": 0, "encrypt": KEYS_ENCRYPTED, "hmac": KEYS_HMAC}[record_keys])
        self._active = None
        self.data_keys_minted = 0

    def close(self) -> None:
        if self._active is not None:
            self._active.wipe()
            self._active = None

    def _data_key(self) -> _DataKey:
        active = self._active
        if active is None or active.sealed >= self.max_records or time.monotonic() - active.created >= self.max_age:
            material, wrapped = self.transit.datakey(self.key)
            if len(material) != 32:
                raise EnvelopeError("Vault returned a data key that is not 256 bits", "vault")
            if active is not None:
                active.wipe()
            self._active = active = _DataKey(material, wrapped)
            self.data_keys_minted += 1
        active.sealed += 1
        return active

    def protect_key(self, stream: str, key):
        """The record key as it goes to the sink (None stays None)."""
        if key is None or self.record_keys == "keep":
            return key
        if self.record_keys == "encrypt":
            return self.transit.encrypt(self.record_keys_key, key, context=stream.encode()).encode("ascii")
        return self.transit.hmac(self.record_keys_key, stream.encode() + b"\x00" + bytes(key)).encode("ascii")

    def seal(self, topic: str, key, value, headers=()):
        """(key, value, headers) for the sink topic `topic`: the stream is the configured
        one, or the topic."""
        stream = self.stream or check_stream(topic)
        headers = [(n, v) for n, v in (headers or []) if n != PROTECTION_HEADER]
        sink_key = self.protect_key(stream, key)
        if self.seal_headers:
            kept = [(n, v) for n, v in headers if n in self.keep_headers or n.startswith(KAFKA_TRANSIT_HEADERS)]
            sealed = [(n, v) for n, v in headers if not (n in self.keep_headers or n.startswith(KAFKA_TRANSIT_HEADERS))]
        else:
            kept, sealed = headers, []
        kept = kept + [(PROTECTION_HEADER, protection_header_value(self.flags))]
        if value is None:
            return sink_key, None, kept  # a tombstone: sealed headers have nowhere to go
        plaintext = frame(sealed, value) if self.seal_headers else bytes(value)
        data_key = self._data_key()
        body = body_of(plaintext, self.flags, self.compression, self.pad_to)
        sealed_value = envelope(data_key.cipher, data_key.commitment, self.key, data_key.wrapped,
                                os.urandom(NONCE_LEN), self.flags, body, binding(self.flags, stream, sink_key)[16:])
        return sink_key, sealed_value, kept


def check_vectors(path: str) -> None:
    """Seals every uncompressed format 3 vector to its exact bytes with its nonce and data key."""
    import json

    document = json.load(open(path, encoding="utf-8"))["format3"]
    sealed = 0
    for vector in document["envelopes"]:
        if vector["compression"] != "none":
            continue
        headers = [(n, None if v is None else bytes.fromhex(v)) for n, v in vector["sealed_headers"]]
        value = bytes.fromhex(vector["value_hex"])
        key = None if vector["record_key_hex"] is None else bytes.fromhex(vector["record_key_hex"])
        plaintext = frame(headers, value) if vector["flags"] & HEADERS else value
        envelope = seal_envelope(bytes.fromhex(vector["data_key_hex"]), vector["key_name"], vector["wrapped_key"],
                                 bytes.fromhex(vector["nonce_hex"]), vector["flags"], plaintext,
                                 binding(vector["flags"], vector["stream"], key)[16:], pad_to=vector["pad_to"])
        assert envelope.hex() == vector["envelope_hex"], vector["name"]
        sealed += 1
    print(f"writer: {sealed} uncompressed format 3 vectors sealed to their exact bytes")


if __name__ == "__main__":
    import sys

    check_vectors(sys.argv[1] if len(sys.argv) > 1 else "docs/envelope-test-vectors.json")

"""Writes docs/envelope-test-vectors.json with Python's `cryptography` alone (no
kafka-transit code), so the vectors check the Rust host and every reader independently.

    python3 docs/gen-envelope-test-vectors.py            # rewrite the file
    python3 docs/gen-envelope-test-vectors.py --check    # fail if the file differs

"vectors" seal fixed inputs to exact envelope bytes (versions 1 and 2). "tampered" are envelopes that every
reader must reject even when it holds the right data key: each names the vector it was
made from, the data key and associated data to try, and what must fail ("version",
"truncated", "authentication" or "key name"), never yielding plaintext.

The "key name" cases are sealed properly (their tags are valid) under a key name that is
not a transit key name: a reader that used the name in its Vault request path
(transit/decrypt/<key name>) would send its token to another path. Only the key name check
can refuse them, and it must, before any Vault call.
"""
import hashlib
import hmac
import json
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envelope-test-vectors.json")

VECTORS = [
    ("hello", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "customers",
     "vault:v1:q6ID4jVrFOsnr8AnUpYHbvHfjEjSu9AD3zpdNNNE0SdS7ZK6rmIi9NhVeEeFy6N9ntamz1gZ8wBTcdYH",
     "000102030405060708090a0b", b"hello, envelope", b""),
    ("empty plaintext with associated data", "a5" * 32, "payments", "vault:v3:Zm9vYmFyYmF6cXV4",
     "ff" * 12, b"", b"customers.raw"),
    ("json record, version 2 key",
     "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283", "team.tenant-a",
     "vault:v2:c2VjcmV0LWRhdGEta2V5LXdyYXBwZWQtYnktdmF1bHQ=", "1415161718191a1b1c1d1e1f",
     b'{"name":"Ada","ssn":"123-45-6789"}', b""),
]


# Version 2 seals the same inputs, named "<name> (v2)"; then the first of them once more
# with its data key rewrapped (transit/rewrap): another wrapped key of the same data key.
REWRAPPED_KEY = "vault:v2:bXkgZGF0YSBrZXksIHJld3JhcHBlZCB1bmRlciB2ZXJzaW9uIDI="
REWRAPPED = "hello (v2), data key rewrapped to version 2: same nonce, ciphertext and tag"


def header(version: int, key_name: str, wrapped: str) -> tuple:
    """The header, and the length of its authenticated prefix: version 2 authenticates the
    version byte and the key name, version 1 the whole header."""
    name, wrapped = key_name.encode(), wrapped.encode()
    head = bytes([version]) + struct.pack(">H", len(name)) + name + struct.pack(">H", len(wrapped)) + wrapped
    return head, 3 + len(name) if version == 2 else len(head)


def seal(version: int, data_key: bytes, key_name: str, wrapped: str, nonce: bytes, plaintext: bytes,
         aad: bytes) -> bytes:
    head, authenticated = header(version, key_name, wrapped)
    return head + nonce + AESGCM(data_key).encrypt(nonce, plaintext, head[:authenticated] + aad)


def vector(version: int, name: str, key_hex: str, key_name: str, wrapped: str, nonce_hex: str,
           plaintext: bytes, aad: bytes) -> dict:
    envelope = seal(version, bytes.fromhex(key_hex), key_name, wrapped, bytes.fromhex(nonce_hex), plaintext, aad)
    return {
        "name": name,
        "format_version": version,
        "data_key_hex": key_hex,
        "key_name": key_name,
        "wrapped_key": wrapped,
        "nonce_hex": nonce_hex,
        "plaintext_hex": plaintext.hex(),
        "aad_hex": aad.hex(),
        "envelope_hex": envelope.hex(),
    }


def vectors() -> list:
    made = [vector(1, *inputs) for inputs in VECTORS] + [vector(2, f"{name} (v2)", *rest) for name, *rest in VECTORS]
    _, key_hex, key_name, _, nonce_hex, plaintext, aad = VECTORS[0]
    rewrapped = vector(2, REWRAPPED, key_hex, key_name, REWRAPPED_KEY, nonce_hex, plaintext, aad)
    body = 2 * (12 + len(plaintext) + 16)  # hex digits of nonce, ciphertext and tag
    assert rewrapped["envelope_hex"][-body:] == made[len(VECTORS)]["envelope_hex"][-body:]
    return made + [rewrapped]


# Key names that are not transit key names (1 to 249 of A-Z a-z 0-9 . _ -, not "." or "..",
# the rule of names/src/lib.rs check_name), each sealed with a valid tag.
# "team/tenant-a" was the key name of "json record, version 2 key" until readers checked
# names: its two envelopes are kept here, byte for byte, as the "/" cases.
BAD_KEY_NAMES = [
    ("key name is '..'", b"..", 2),
    ("key name is '.'", b".", 2),
    ("key name with '/'", b"team/tenant-a", 2),
    ("key name with '/' (v1)", b"team/tenant-a", 1),
    ("key name climbing out of the mount", b"../../sys/seal", 2),
    ("empty key name", b"", 2),
    ("key name with a space", b"customers x", 2),
    ("key name not UTF-8", b"customers\xff", 2),
    ("key name of 250 characters", b"k" * 250, 2),
]


def seal_raw(version: int, based_on: dict, key_name: bytes) -> bytes:
    """`based_on` sealed again, under a key name given as raw bytes (any bytes at all)."""
    wrapped = based_on["wrapped_key"].encode()
    head = bytes([version]) + struct.pack(">H", len(key_name)) + key_name + struct.pack(">H", len(wrapped)) + wrapped
    authenticated = head[: 3 + len(key_name)] if version == 2 else head
    nonce = bytes.fromhex(based_on["nonce_hex"])
    aad = bytes.fromhex(based_on["aad_hex"])
    sealed = AESGCM(bytes.fromhex(based_on["data_key_hex"])).encrypt(
        nonce, bytes.fromhex(based_on["plaintext_hex"]), authenticated + aad)
    return head + nonce + sealed


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def case(name: str, based_on: dict, data: bytes, expect: str, aad_hex: str = None) -> dict:
    return {
        "name": name,
        "based_on": based_on["name"],
        "data_key_hex": based_on["data_key_hex"],
        "aad_hex": based_on["aad_hex"] if aad_hex is None else aad_hex,
        "envelope_hex": data.hex(),
        "expect": expect,
    }


def tampered(vectors: list) -> list:
    named = {v["name"]: v for v in vectors}
    hello, empty = named["hello"], named["empty plaintext with associated data"]
    hello2, empty2 = named["hello (v2)"], named["empty plaintext with associated data (v2)"]
    json_record = {1: named["json record, version 2 key"], 2: named["json record, version 2 key (v2)"]}
    envelope, envelope2 = bytes.fromhex(hello["envelope_hex"]), bytes.fromhex(hello2["envelope_hex"])
    head_len = len(header(1, hello["key_name"], hello["wrapped_key"])[0])
    name_at = 3  # first byte of the key name
    wrapped_at = 5 + len(hello["key_name"]) + len("vault:v1:")  # first base64 byte of the wrapped key
    # Version 2 leaves the wrapped key out of the tag: a changed one is Vault's to notice
    # (it unwraps to another data key, or not at all), so no case here expects otherwise.
    return [
        case("flipped tag byte", hello, flip(envelope, len(envelope) - 1), "authentication"),
        case("flipped ciphertext byte", hello, flip(envelope, head_len + 12), "authentication"),
        case("flipped nonce byte", hello, flip(envelope, head_len), "authentication"),
        case("key name changed in the authenticated header", hello, flip(envelope, name_at + 8), "authentication"),
        case("wrapped key changed in the authenticated header", hello, flip(envelope, wrapped_at), "authentication"),
        case("wrong associated data", empty, bytes.fromhex(empty["envelope_hex"]), "authentication", aad_hex=""),
        case("tag cut off", hello, envelope[:-16], "truncated"),
        case("cut inside the nonce", hello, envelope[: head_len + 5], "truncated"),
        case("cut inside the key name", hello, envelope[:7], "truncated"),
        case("wrapped key length past the end", hello, envelope[: head_len - 1], "truncated"),
        case("empty input", hello, b"", "truncated"),
        case("unknown version byte", hello, b"\x04" + envelope[1:], "version"),
        case("a plaintext JSON record", hello, b'{"name":"Ada"}' + bytes(40), "version"),
        case("version byte changed from 1 to 2", hello, b"\x02" + envelope[1:], "authentication"),
        case("version byte changed from 2 to 1", hello2, b"\x01" + envelope2[1:], "authentication"),
        case("flipped tag byte (v2)", hello2, flip(envelope2, len(envelope2) - 1), "authentication"),
        case("key name changed in the authenticated header (v2)", hello2, flip(envelope2, name_at + 8),
             "authentication"),
        case("wrong associated data (v2)", empty2, bytes.fromhex(empty2["envelope_hex"]), "authentication",
             aad_hex=""),
    ] + [
        case(name, json_record[version], seal_raw(version, json_record[version], key_name), "key name")
        for name, key_name, version in BAD_KEY_NAMES
    ]

# Format 3 (docs/protected-records.md, docs/envelope-format.md "Version 3"), written from
# the documents alone.
BINDING_PREFIX = b"kafka-transit/3"
COMMITMENT_MESSAGE = b"kafka-transit/3 key commitment"
STREAM, KEY, HEADERS, PADDED = 0x01, 0x02, 0x04, 0x08
ZSTD, LZ4 = 0x10, 0x20
KEYS_ENCRYPTED, KEYS_HMAC = 0x40, 0x80
COMPRESSION = {0x00: "none", ZSTD: "zstd", LZ4: "lz4"}
# What a reader may decompress to in the vectors (pipeline.max_record_bytes in the host).
MAX_PLAINTEXT = 1 << 20


def binding(flags: int, stream: str, key, pointer=None) -> bytes:
    data = BINDING_PREFIX + bytes([flags])
    if flags & STREAM:
        data += struct.pack(">H", len(stream.encode())) + stream.encode()
    if flags & KEY:
        data += b"\x00" if key is None else b"\x01" + struct.pack(">I", len(key)) + key
    if pointer is not None:
        data += struct.pack(">I", len(pointer.encode())) + pointer.encode()
    return data


def frame(headers: list, value: bytes) -> bytes:
    out = struct.pack(">I", len(headers))
    for name, header_value in headers:
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">i", -1) if header_value is None else struct.pack(">i", len(header_value)) + header_value
    return out + value


def pad(data: bytes, pad_to: int) -> bytes:
    unpadded = struct.pack(">I", len(data)) + data
    return unpadded + bytes(-len(unpadded) % pad_to)


def commitment(data_key: bytes) -> bytes:
    return hmac.new(data_key, COMMITMENT_MESSAGE, hashlib.sha256).digest()


def decompress(compression: str, data: bytes) -> bytes:
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=64 << 20)
    import lz4.frame
    return lz4.frame.decompress(data)


def compress(compression: str, data: bytes, previous) -> bytes:
    """zstd (level 3) or an LZ4 frame; a published body that still decompresses to `data`
    is kept (see previous_compressed)."""
    if previous is not None and decompress(compression, previous) == data:
        return previous
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    import lz4.frame
    return lz4.frame.compress(data)


def seal_v3(data_key: bytes, flags: int, key_name: str, wrapped: str, nonce: bytes, body: bytes,
            binding_parts: bytes) -> bytes:
    """version 3 ‖ flags ‖ u16 N ‖ key name ‖ commitment ‖ u16 W ‖ wrapped key ‖ nonce ‖ AES-GCM
    with associated data = authenticated header (up to the commitment) ‖ binding[16..]."""
    name = key_name.encode()
    authenticated = bytes([3, flags]) + struct.pack(">H", len(name)) + name + commitment(data_key)
    head = authenticated + struct.pack(">H", len(wrapped)) + wrapped.encode()
    return head + nonce + AESGCM(data_key).encrypt(nonce, body, authenticated + binding_parts)


ORDER = json.dumps({"customer": "Ada Lovelace", "notes": ["a" * 80, "b" * 80]}, separators=(",", ":")).encode()
SEALED_HEADERS = [("traceparent-copy", b"00-abc-01"), ("a", b"1"), ("a", b"2"), ("empty", b""), ("none", None),
                  ("caf\u00e9", "\u00e9t\u00e9".encode())]
# The record key as it is on the sink: with record_keys = "encrypt" or "hmac", Vault's text.
SINK_KEY = b"vault:v1:c2luay1rZXktb2YtY3VzdG9tZXItNDI="
# (name, flags, stream, record key, sealed headers, value, pad_to)
V3 = [
    ("v3, the protection header alone (flags 00)", 0x00, "orders", b"customer-42", [], b"hello, format 3", 0),
    ("v3 bound to stream and key", STREAM | KEY, "orders", b"customer-42", [], b"hello, format 3", 0),
    ("v3 bound to stream and a null key", STREAM | KEY, "orders", None, [], b"hello, format 3", 0),
    ("v3 bound to stream and an empty key", STREAM | KEY, "orders", b"", [], b"", 0),
    ("v3 zstd", STREAM | ZSTD, "orders", b"customer-42", [], ORDER, 0),
    ("v3 lz4", STREAM | LZ4, "orders", b"customer-42", [], ORDER, 0),
    ("v3 padded to 64", STREAM | PADDED, "orders", b"customer-42", [], b"hello, format 3", 64),
    ("v3 sealed headers", STREAM | KEY | HEADERS, "orders", b"customer-42", SEALED_HEADERS, b"hello, format 3", 0),
    ("v3 every option: encrypted key, bound, sealed headers, zstd, padded to 256",
     STREAM | KEY | HEADERS | PADDED | ZSTD | KEYS_ENCRYPTED, "orders.v3", SINK_KEY, SEALED_HEADERS, ORDER, 256),
    ("v3 hmac key, bound, lz4, padded to 32", STREAM | KEY | PADDED | LZ4 | KEYS_HMAC, "orders", SINK_KEY, [],
     ORDER, 32),
]


def v3_vector(index: int, inputs: tuple, previous: dict) -> dict:
    name, flags, stream, key, headers, value, pad_to = inputs
    data_key = hashlib.sha256(b"format 3 data key %d" % index).digest()
    nonce = hashlib.sha256(b"format 3 nonce %d" % index).digest()[:12]
    wrapped = "vault:v1:" + hashlib.sha256(b"wrapped %d" % index).hexdigest()[:40]
    plaintext = frame(headers, value) if flags & HEADERS else value
    compression = COMPRESSION[flags & 0x30]
    compressed = None if compression == "none" else compress(compression, plaintext, previous.get(name))
    body = compressed if compressed is not None else plaintext
    if flags & PADDED:
        body = pad(body, pad_to)
    bound = binding(flags, stream, key)
    return {
        "name": name,
        "format_version": 3,
        "data_key_hex": data_key.hex(),
        "key_name": "customers",
        "wrapped_key": wrapped,
        "nonce_hex": nonce.hex(),
        "flags": flags,
        "protection_header": "3;%02x" % flags,
        "stream": stream,
        "record_key_hex": None if key is None else key.hex(),
        "sealed_headers": [[n, None if v is None else v.hex()] for n, v in headers],
        "value_hex": value.hex(),
        "compression": compression,
        "pad_to": pad_to,
        "commitment_hex": commitment(data_key).hex(),
        "binding_hex": bound.hex(),
        "plaintext_hex": plaintext.hex(),
        "compressed_hex": None if compressed is None else compressed.hex(),
        "body_hex": body.hex(),
        "envelope_hex": seal_v3(data_key, flags, "customers", wrapped, nonce, body, bound[16:]).hex(),
    }


BINDINGS = [
    (0x00, "orders", b"k1", None),
    (STREAM, "orders", b"k1", None),
    (KEY, "orders", b"k1", None),
    (STREAM | KEY, "orders", b"k1", "/ssn"),
    (STREAM | KEY, "orders", None, None),
    (STREAM | KEY, "orders", b"", None),
    (STREAM | KEY | KEYS_ENCRYPTED, "t" * 249, b"\xff\x00key", "/a~1b/0/~0c"),
    (STREAM | HEADERS | ZSTD | PADDED, "payments", None, "/card"),
]

FRAMES = [
    ([], b""),
    ([], b"value only"),
    ([("a", b"1"), ("a", b"2"), ("empty", b""), ("none", None)], b"value"),
    ([("caf\u00e9", "\u00e9t\u00e9".encode()), ("bin", bytes(range(256)))], b"\x00\xff"),
]


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def v3_case(name: str, based_on: dict, envelope: bytes, expect: str, **changes) -> dict:
    """A record every reader must refuse with the right data key: `expect` names why.
    "authentication": the tag (another stream, key or flags); "truncated"; "flags": the
    protection header is missing, malformed, of unknown flags, or differs from the
    envelope's flags byte; "commitment": the data key is not the one the envelope commits
    to; "padding"; "decompression" (not a valid zstd or LZ4 frame); "too large" (over
    max_plaintext_bytes once decompressed); "frame" (the sealed headers' frame is not one);
    "unbound" (the reader requires a binding the record lacks)."""
    record_key = based_on.get("record_key_hex", None)
    out = {
        "name": name,
        "based_on": based_on["name"],
        "data_key_hex": based_on["data_key_hex"],
        "protection_header": based_on.get("protection_header"),
        "stream": based_on.get("stream", "orders"),
        "record_key_hex": record_key,
        "require_binding": [],
        "max_plaintext_bytes": MAX_PLAINTEXT,
        "envelope_hex": envelope.hex(),
        "expect": expect,
    }
    out.update(changes)
    return out


def v3_tampered(envelopes: list, v2: list) -> list:
    named = {v["name"]: v for v in envelopes}
    bound = named["v3 bound to stream and key"]
    plain = named["v3, the protection header alone (flags 00)"]
    headers = named["v3 sealed headers"]
    padded = named["v3 padded to 64"]
    zstd = named["v3 zstd"]
    every = named["v3 every option: encrypted key, bound, sealed headers, zstd, padded to 256"]
    hello2 = {v["name"]: v for v in v2}["hello (v2)"]
    raw = lambda v: bytes.fromhex(v["envelope_hex"])  # noqa: E731

    def reseal(based_on: dict, flags: int = None, body: bytes = None) -> bytes:
        """`based_on` sealed again as given (valid tag), to reach the check after the tag."""
        flags = based_on["flags"] if flags is None else flags
        key = None if based_on["record_key_hex"] is None else bytes.fromhex(based_on["record_key_hex"])
        return seal_v3(bytes.fromhex(based_on["data_key_hex"]), flags, based_on["key_name"],
                       based_on["wrapped_key"], bytes.fromhex(based_on["nonce_hex"]),
                       bytes.fromhex(based_on["body_hex"]) if body is None else body,
                       binding(flags, based_on["stream"], key)[16:])

    other_key = hashlib.sha256(b"another data key of the same transit key").digest()
    # The envelope with the wrapped key of another data key: Vault unwraps that one.
    name_end = 4 + len(bound["key_name"])
    swapped = bytearray(raw(bound))
    wrapped_at = name_end + 32 + 2
    other_wrapped = b"vault:v1:" + b"0" * (len(bound["wrapped_key"]) - len("vault:v1:"))
    swapped[wrapped_at: wrapped_at + len(other_wrapped)] = other_wrapped
    cut_in_commitment = raw(bound)[: name_end + 10]
    non_zero = bytearray(bytes.fromhex(padded["body_hex"]))
    non_zero[-1] = 1
    past_end = bytearray(bytes.fromhex(padded["body_hex"]))
    past_end[0:4] = struct.pack(">I", len(past_end))
    assert decompress("zstd", BOMB) == bytes(2 * MAX_PLAINTEXT)
    short_frame = struct.pack(">I", 5) + struct.pack(">I", 1) + b"a" + struct.pack(">i", -1)
    return [
        v3_case("moved to another stream", bound, raw(bound), "authentication", stream="payments"),
        v3_case("moved under another record key", bound, raw(bound), "authentication",
                record_key_hex=b"customer-43".hex()),
        v3_case("record key removed (null)", bound, raw(bound), "authentication", record_key_hex=None),
        v3_case("record key changed (encrypted keys)", every, raw(every), "authentication",
                record_key_hex=b"vault:v1:b3RoZXIta2V5".hex()),
        v3_case("protection header stripped", bound, raw(bound), "flags", protection_header=None),
        v3_case("protection header stripped (sealed headers)", headers, raw(headers), "flags",
                protection_header=None),
        v3_case("flag flipped in the protection header only (sealed headers cleared)", headers, raw(headers),
                "flags", protection_header="3;%02x" % (headers["flags"] & ~HEADERS)),
        v3_case("flag flipped in the protection header only (key binding cleared)", bound, raw(bound), "flags",
                protection_header="3;%02x" % (bound["flags"] & ~KEY)),
        v3_case("protection header with unknown flags", bound, raw(bound), "flags", protection_header="3;33"),
        v3_case("protection header of another format", bound, raw(bound), "flags", protection_header="4;03"),
        v3_case("protection header not two hex digits", bound, raw(bound), "flags", protection_header="3;3"),
        v3_case("unknown flags in the envelope", bound, bytes([3, 0xc3]) + raw(bound)[2:], "flags",
                protection_header="3;03"),
        v3_case("sealed headers stripped: flag cleared in the envelope and the header", headers,
                flip(raw(headers), 1, HEADERS), "authentication",
                protection_header="3;%02x" % (headers["flags"] & ~HEADERS)),
        v3_case("key binding cleared in the envelope and the header", bound, flip(raw(bound), 1, KEY),
                "authentication", protection_header="3;%02x" % (bound["flags"] & ~KEY)),
        v3_case("compression flag cleared in the envelope and the header", zstd, flip(raw(zstd), 1, ZSTD),
                "authentication", protection_header="3;%02x" % (zstd["flags"] & ~ZSTD)),
        v3_case("flipped tag byte", bound, flip(raw(bound), len(raw(bound)) - 1), "authentication"),
        v3_case("flipped commitment byte", bound, flip(raw(bound), name_end + 3), "commitment"),
        v3_case("key name changed", bound, flip(raw(bound), 4), "authentication"),
        v3_case("a version 2 envelope under a format 3 protection header", hello2,
                bytes.fromhex(hello2["envelope_hex"]), "flags", protection_header="3;00", stream="orders"),
        v3_case("a version 3 envelope relabelled version 2", bound, b"\x02" + raw(bound)[1:], "flags"),
        v3_case("cut inside the commitment", bound, cut_in_commitment, "truncated"),
        v3_case("cut inside the flags", bound, raw(bound)[:1], "truncated"),
        v3_case("tag cut off", bound, raw(bound)[:-16], "truncated"),
        v3_case("wrapped key of another data key: commitment mismatch", bound, bytes(swapped), "commitment",
                data_key_hex=other_key.hex()),
        v3_case("commitment rewritten for the other data key", bound,
                raw(bound)[:name_end] + commitment(other_key) + raw(bound)[name_end + 32:], "authentication",
                data_key_hex=other_key.hex()),
        v3_case("non-zero padding", padded, reseal(padded, body=bytes(non_zero)), "padding"),
        v3_case("padding length past the end", padded, reseal(padded, body=bytes(past_end)), "padding"),
        v3_case("decompression bomb over the limit", zstd, reseal(zstd, body=BOMB), "too large"),
        v3_case("zstd flag on a body that is not zstd", zstd, reseal(zstd, body=b"not a zstd frame at all"),
                "decompression"),
        v3_case("sealed headers' frame cut short", headers, reseal(headers, body=short_frame), "frame"),
        v3_case("unbound record where the stream binding is required", plain, raw(plain), "unbound",
                require_binding=["stream"]),
        v3_case("stream-bound record where the key binding is required", zstd, raw(zstd), "unbound",
                require_binding=["stream", "key"]),
        v3_case("a version 2 envelope where a binding is required", hello2, bytes.fromhex(hello2["envelope_hex"]),
                "unbound", require_binding=["stream"]),
    ] + [
        v3_case("every option, moved to another stream", every, raw(every), "authentication", stream="orders"),
    ]


# zstd (level 3) of 2 MiB of zeros: 82 bytes that a reader must not expand past its limit.
BOMB = bytes.fromhex("28b52ffda0000020005400001000000100fbff39c002020010000200100002001000020010000200100002"
                     "001000020010000200100002001000020010000200100002001000020010000200100003001000")


def format3(made: list, previous: dict) -> dict:
    envelopes = [v3_vector(i, inputs, previous) for i, inputs in enumerate(V3)]
    return {
        "envelopes": envelopes,
        "bindings": [
            {"flags": f, "stream": s, "record_key_hex": None if k is None else k.hex(), "pointer": p,
             "binding_hex": binding(f, s, k, p).hex()}
            for f, s, k, p in BINDINGS
        ],
        "frames": [
            {"headers": [[n, None if v is None else v.hex()] for n, v in h], "value_hex": v.hex(),
             "frame_hex": frame(h, v).hex()}
            for h, v in FRAMES
        ],
        "tampered": v3_tampered(envelopes, made),
    }


def build() -> str:
    made = vectors()
    document = {
        "format": "kafka-transit envelope v1 and v2 (docs/envelope-format.md); format 3 records "
                  "under \"format3\" (docs/protected-records.md)",
        "generated_by": "Python cryptography AESGCM, independently of the Rust implementation "
                        "(docs/gen-envelope-test-vectors.py)",
        "vectors": made,
        "tampered": tampered(made),
        "format3": format3(made, previous_compressed()),
    }
    return json.dumps(document, indent=2) + "\n"


def previous_compressed() -> dict:
    """Compressed bodies already published, by vector name. zstd and LZ4 output is not
    canonical (it may change with the library's version), so a published body is kept
    as long as it still decompresses to the vector's input: --check then does not depend
    on the compressor's version, only on the format."""
    try:
        published = json.load(open(PATH, encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {v["name"]: bytes.fromhex(v["compressed_hex"])
            for v in published.get("format3", {}).get("envelopes", []) if v.get("compressed_hex")}


def main() -> None:
    text = build()
    if sys.argv[1:] == ["--check"]:
        if open(PATH, encoding="utf-8").read() != text:
            sys.exit(f"{PATH} is not what gen-envelope-test-vectors.py writes: run it")
        print(f"{PATH} is up to date")
    else:
        open(PATH, "w", encoding="utf-8").write(text)
        print(f"wrote {PATH}")


if __name__ == "__main__":
    main()

"""Writes docs/envelope-test-vectors.json with Python's `cryptography` alone (no
kafka-transit code), so the vectors check the Rust host and every reader independently.

    python3 docs/gen-envelope-test-vectors.py            # rewrite the file
    python3 docs/gen-envelope-test-vectors.py --check    # fail if the file differs

"vectors" seal fixed inputs to exact envelope bytes. "tampered" are envelopes that every
reader must reject even when it holds the right data key: each names the vector it was
made from, the data key and associated data to try, and what must fail ("version",
"truncated", "authentication" or "key name"), never yielding plaintext.

The "key name" cases are sealed properly (their tags are valid) under a key name that is
not a transit key name: a reader that used the name in its Vault request path
(transit/decrypt/<key name>) would send its token to another path. Only the key name check
can refuse them, and it must, before any Vault call.
"""
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


def build() -> str:
    made = vectors()
    document = {
        "format": "kafka-transit envelope v1 and v2 (docs/envelope-format.md)",
        "generated_by": "Python cryptography AESGCM, independently of the Rust implementation "
                        "(docs/gen-envelope-test-vectors.py)",
        "vectors": made,
        "tampered": tampered(made),
    }
    return json.dumps(document, indent=2) + "\n"


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

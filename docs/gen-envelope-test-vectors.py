"""Writes docs/envelope-test-vectors.json with Python's `cryptography` alone (no
kafka-transit code), so the vectors check the Rust host and every reader independently.

    python3 docs/gen-envelope-test-vectors.py            # rewrite the file
    python3 docs/gen-envelope-test-vectors.py --check    # fail if the file differs

"vectors" seal fixed inputs to exact envelope bytes. "tampered" are envelopes that every
reader must reject even when it holds the right data key: each names the vector it was
made from, the data key and associated data to try, and what must fail ("version",
"truncated" or "authentication"), never yielding plaintext.
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
     "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283", "team/tenant-a",
     "vault:v2:c2VjcmV0LWRhdGEta2V5LXdyYXBwZWQtYnktdmF1bHQ=", "1415161718191a1b1c1d1e1f",
     b'{"name":"Ada","ssn":"123-45-6789"}', b""),
]


def header(key_name: str, wrapped: str) -> bytes:
    name, wrapped = key_name.encode(), wrapped.encode()
    return b"\x01" + struct.pack(">H", len(name)) + name + struct.pack(">H", len(wrapped)) + wrapped


def seal(data_key: bytes, key_name: str, wrapped: str, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    head = header(key_name, wrapped)
    return head + nonce + AESGCM(data_key).encrypt(nonce, plaintext, head + aad)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def tampered(vectors: list) -> list:
    hello, empty, _ = vectors
    envelope = bytes.fromhex(hello["envelope_hex"])
    head_len = len(header(hello["key_name"], hello["wrapped_key"]))
    name_at = 3  # first byte of the key name
    wrapped_at = 5 + len(hello["key_name"]) + len("vault:v1:")  # first base64 byte of the wrapped key

    def case(name, based_on, data, expect, aad_hex=None):
        return {
            "name": name,
            "based_on": based_on["name"],
            "data_key_hex": based_on["data_key_hex"],
            "aad_hex": based_on["aad_hex"] if aad_hex is None else aad_hex,
            "envelope_hex": data.hex(),
            "expect": expect,
        }

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
        case("wrong version byte", hello, b"\x02" + envelope[1:], "version"),
        case("a plaintext JSON record", hello, b'{"name":"Ada"}' + bytes(40), "version"),
    ]


def build() -> str:
    vectors = []
    for name, key_hex, key_name, wrapped, nonce_hex, plaintext, aad in VECTORS:
        envelope = seal(bytes.fromhex(key_hex), key_name, wrapped, bytes.fromhex(nonce_hex), plaintext, aad)
        vectors.append({
            "name": name,
            "data_key_hex": key_hex,
            "key_name": key_name,
            "wrapped_key": wrapped,
            "nonce_hex": nonce_hex,
            "plaintext_hex": plaintext.hex(),
            "aad_hex": aad.hex(),
            "envelope_hex": envelope.hex(),
        })
    document = {
        "format": "kafka-transit envelope v1 (docs/envelope-format.md)",
        "generated_by": "Python cryptography AESGCM, independently of the Rust implementation "
                        "(docs/gen-envelope-test-vectors.py)",
        "vectors": vectors,
        "tampered": tampered(vectors),
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

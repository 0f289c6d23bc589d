"""An in-process stand-in for Vault's transit engine, for tests: datakey/plaintext,
encrypt/decrypt with `associated_data` (AES-GCM) and `context` (a derived, convergent key:
the same plaintext and context give the same ciphertext), and hmac. Failures read like
Vault's ("cipher: message authentication failed"; "encryption key not found" for a key it
does not have, e.g. once deleted with `delete_key`, as `kafka-transit forget` does)."""
import base64
import hashlib
import hmac as hmac_
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from transit import TransitError


class FakeTransit:
    def __init__(self):
        self.keys = {}
        self.calls = []

    def delete_key(self, name: str) -> None:
        self.keys.pop(name)

    def _key(self, name: str, context: bytes = None) -> bytes:
        root = self.keys.setdefault(name, os.urandom(32))
        return root if context is None else hmac_.new(root, b"derive" + context, hashlib.sha256).digest()

    def datakey(self, key_name: str, context: bytes = None):
        self.calls.append(("datakey", key_name))
        material = os.urandom(32)
        return bytearray(material), self.encrypt(key_name, material, context)

    def encrypt(self, key_name, plaintext, context=None, associated_data=None) -> str:
        self.calls.append(("encrypt", key_name))
        key = self._key(key_name, context)
        # Convergent with a context (Vault derives the nonce from the plaintext), random otherwise.
        nonce = hmac_.new(key, bytes(plaintext), hashlib.sha256).digest()[:12] if context else os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), associated_data)
        return "vault:v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, key_name, ciphertext, context=None, associated_data=None) -> bytes:
        self.calls.append(("decrypt", key_name))
        if not ciphertext.startswith("vault:v1:"):
            raise TransitError("invalid ciphertext")
        # Vault's decrypt creates no key (this stand-in's encrypt and datakey do).
        if key_name not in self.keys:
            raise TransitError(f"transit/decrypt/{key_name}: encryption key not found")
        raw = base64.b64decode(ciphertext[len("vault:v1:"):])
        try:
            return AESGCM(self._key(key_name, context)).decrypt(raw[:12], raw[12:], associated_data)
        except InvalidTag:
            raise TransitError(f"transit/decrypt/{key_name}: cipher: message authentication failed") from None

    def hmac(self, key_name, data) -> str:
        self.calls.append(("hmac", key_name))
        mac = hmac_.new(self._key(key_name), bytes(data), hashlib.sha256).digest()
        return "vault:v1:" + base64.b64encode(mac).decode()

"""A small client for the Vault (or OpenBao) transit calls that format 3 readers and
writers make: datakey/plaintext, encrypt, decrypt (with `context` and `associated_data`)
and hmac. Plain `requests`, so that `associated_data` is passed whatever hvac's version.
The token is never shown (not in repr, not in errors).
"""
import base64

import requests

from envelope_decrypt import KEY_NOT_FOUND, check_key_name


class TransitError(Exception):
    """Vault refused or could not be reached. `authentication` is true when Vault said the
    ciphertext does not authenticate (another stream, key or place in the document);
    `key_not_found` when Vault has no transit key of that name (HTTP 400 "encryption key
    not found", what Vault and OpenBao answer after the key was deleted, e.g. by
    `kafka-transit forget`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.authentication = "message authentication failed" in message
        self.key_not_found = KEY_NOT_FOUND in message


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


class Transit:
    def __init__(self, address: str, token: str, mount: str = "transit", namespace: str = None,
                 verify=True, timeout: float = 30.0):
        self._address = address.rstrip("/")
        self._token = token
        self._mount = mount.strip("/")
        self._namespace = namespace
        self._verify = verify
        self._timeout = timeout
        self._session = requests.Session()
        self.requests = 0

    def __repr__(self) -> str:
        return f"Transit(address={self._address!r}, mount={self._mount!r})"

    def _request(self, operation: str, key_name: str, body: dict) -> dict:
        check_key_name(key_name.encode())  # it becomes part of the request path
        headers = {"X-Vault-Token": self._token}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        self.requests += 1
        try:
            response = self._session.post(f"{self._address}/v1/{self._mount}/{operation}/{key_name}", json=body,
                                          headers=headers, verify=self._verify, timeout=self._timeout)
        except requests.RequestException as error:
            raise TransitError(f"Vault at {self._address} is unreachable: {type(error).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code >= 400 or not isinstance(answer.get("data"), dict):
            errors = "; ".join(answer.get("errors") or []) or f"HTTP {response.status_code}"
            raise TransitError(f"transit/{operation}/{key_name}: {errors}")
        return answer["data"]

    def datakey(self, key_name: str, context: bytes = None):
        """(data key as a bytearray the caller wipes, wrapped key text)."""
        body = {} if context is None else {"context": b64(context)}
        data = self._request("datakey/plaintext", key_name, body)
        return bytearray(base64.b64decode(data["plaintext"])), data["ciphertext"]

    def encrypt(self, key_name: str, plaintext: bytes, context: bytes = None, associated_data: bytes = None) -> str:
        body = {"plaintext": b64(plaintext)}
        if context is not None:
            body["context"] = b64(context)
        if associated_data is not None:
            body["associated_data"] = b64(associated_data)
        return self._request("encrypt", key_name, body)["ciphertext"]

    def decrypt(self, key_name: str, ciphertext: str, context: bytes = None, associated_data: bytes = None) -> bytes:
        body = {"ciphertext": ciphertext}
        if context is not None:
            body["context"] = b64(context)
        if associated_data is not None:
            body["associated_data"] = b64(associated_data)
        return base64.b64decode(self._request("decrypt", key_name, body)["plaintext"])

    def hmac(self, key_name: str, data: bytes) -> str:
        return self._request("hmac", key_name, {"input": b64(data)})["hmac"]

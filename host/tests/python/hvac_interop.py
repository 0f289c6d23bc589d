#!/usr/bin/env python3
"""Interop checks between kafka-transit's Vault client and the reference Python tools.

Usage: hvac_interop.py MODE < request.json > response.json

The token is read from the VAULT_TOKEN environment variable (never argv). The request
holds "url", "mount", "key" and, depending on MODE:

  encrypt         {"plaintexts_b64": [...]}  -> {"ciphertexts": [...]}   (hvac; single
                  requests for the first half, one batch request for the rest)
  decrypt         {"ciphertexts": [...]}     -> {"plaintexts_b64": [...]} (hvac)
  aesgcm-decrypt  {"ciphertexts": [...]}     -> {"plaintexts_b64": [...]}: exports the
                  (exportable) key with hvac and decrypts locally with `cryptography`'s
                  AESGCM (nonce = first 12 bytes, rest = ciphertext || tag, no AAD)

Optional "ca_cert" is passed to hvac as `verify`. Errors go to stderr, exit status 1.
"""
import base64
import json
import os
import sys

import hvac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def client(req):
    verify = req.get("ca_cert") or True
    c = hvac.Client(url=req["url"], token=os.environ["VAULT_TOKEN"], verify=verify)
    return c


def do_encrypt(req):
    c = client(req)
    mount, key = req["mount"], req["key"]
    pts = req["plaintexts_b64"]
    half = len(pts) // 2
    out = []
    for p in pts[:half]:
        r = c.secrets.transit.encrypt_data(key, plaintext=p, mount_point=mount)
        out.append(r["data"]["ciphertext"])
    if pts[half:]:
        r = c.secrets.transit.encrypt_data(
            key, batch_input=[{"plaintext": p} for p in pts[half:]], mount_point=mount
        )
        for item in r["data"]["batch_results"]:
            if item.get("error"):
                raise SystemExit("hvac batch encrypt item failed: %s" % item["error"])
            out.append(item["ciphertext"])
    return {"ciphertexts": out}


def do_decrypt(req):
    c = client(req)
    mount, key = req["mount"], req["key"]
    out = []
    for ct in req["ciphertexts"]:
        r = c.secrets.transit.decrypt_data(key, ciphertext=ct, mount_point=mount)
        out.append(r["data"]["plaintext"] or "")
    return {"plaintexts_b64": out}


def do_aesgcm_decrypt(req):
    c = client(req)
    mount, key = req["mount"], req["key"]
    exported = c.secrets.transit.export_key(key, key_type="encryption-key", mount_point=mount)
    keys = exported["data"]["keys"]
    out = []
    for ct in req["ciphertexts"]:
        prefix, version, payload = ct.split(":", 2)
        if prefix != "vault" or not version.startswith("v"):
            raise SystemExit("not a Vault ciphertext: %r" % ct[:16])
        raw_key = base64.b64decode(keys[version[1:]], validate=True)
        blob = base64.b64decode(payload, validate=True)
        nonce, body = blob[:12], blob[12:]
        pt = AESGCM(raw_key).decrypt(nonce, body, None)
        out.append(base64.b64encode(pt).decode())
    return {"plaintexts_b64": out}


MODES = {"encrypt": do_encrypt, "decrypt": do_decrypt, "aesgcm-decrypt": do_aesgcm_decrypt}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.stderr.write("usage: hvac_interop.py {%s} < request.json\n" % "|".join(MODES))
        return 2
    req = json.load(sys.stdin)
    json.dump(MODES[sys.argv[1]](req), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

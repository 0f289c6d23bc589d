"""Checks encrypt-value output with Vault alone: decrypt_check.py KEY ORIGINALS.tsv PROTECTED.tsv

Both files hold key<TAB>value lines. Every record of PROTECTED (a key seen several times
is decrypted each time) is decrypted with transit/decrypt through hvac and must equal
the original value of its key in ORIGINALS; PROTECTED must hold every key of ORIGINALS
and no other. VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT (TLS) as stack.sh exports them.
"""
import base64
import os
import sys

import hvac

# Per request: OpenBao refuses bodies of more than 1000 JSON strings by default.
CHUNK = 400


def load(path: str) -> list:
    return [tuple(line.rstrip("\n").split("\t", 1)) for line in open(path, encoding="utf-8")]


def main() -> None:
    key, originals_path, protected_path = sys.argv[1:4]
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"],
                         verify=os.environ.get("VAULT_CACERT") or True)
    original = dict(load(originals_path))
    protected = load(protected_path)
    keys = {k for k, _ in protected}
    missing, unexpected = set(original) - keys, keys - set(original)
    if missing or unexpected:
        sys.exit(f"{protected_path}: {len(missing)} keys missing (e.g. {sorted(missing)[:3]}), "
                 f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]})")
    differ = []
    for start in range(0, len(protected), CHUNK):
        chunk = protected[start:start + CHUNK]
        results = client.secrets.transit.decrypt_data(
            name=key, ciphertext="", batch_input=[{"ciphertext": v} for _, v in chunk])
        for (k, _), result in zip(chunk, results["data"]["batch_results"]):
            plain = result.get("plaintext")
            if plain is None or base64.b64decode(plain).decode() != original[k]:
                differ.append(k)
    if differ:
        sys.exit(f"{len(differ)} records differ from the originals after decryption, e.g. {differ[:3]}")
    print(f"   {len(protected)} records ({len(keys)} keys) decrypted identical to the originals")


if __name__ == "__main__":
    main()

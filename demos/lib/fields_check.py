"""Checks encrypt-fields output against the originals, byte for byte, with Vault alone:

    fields_check.py BOOTSTRAP TOPIC ORIGINALS.tsv FIELD KEY_PREFIX (exactly-once|at-least-once) [ONLY]

ORIGINALS holds key<TAB>tenant<TAB>value lines (tenant_stream.py writes them). TOPIC is
read read_committed, every partition to its end. Every original key must be there
(exactly once, or at least once), no other key; in every copy the top-level member FIELD
must be a `vault:v<N>:` ciphertext, the only one in the value, that transit/decrypt (hvac,
key KEY_PREFIX<tenant>, VAULT_ADDR and VAULT_TOKEN as stack.sh exports them) turns back
into the original member's JSON text, and the value with that text put back in place of
the ciphertext string must be the original value, byte for byte (numbers, escapes,
spacing and member order as the producer wrote them).

With ONLY (a regular expression), records whose key it does not match are left out, on
the topic and in ORIGINALS alike. Prints one summary line; lists problems (a few examples of each) and exits 1 if any.
"""
import base64
import collections
import decimal
import json
import os
import re
import sys

import hvac

from read_topic import read_records

CIPHERTEXT = re.compile(rb'"(vault:v[0-9]+:[A-Za-z0-9+/=]+)"')
CHUNK = 400  # OpenBao refuses request bodies of more than 1000 JSON strings


def main() -> None:
    bootstrap, topic, originals_path, field, key_prefix, delivery = sys.argv[1:7]
    if delivery not in ("exactly-once", "at-least-once"):
        sys.exit(__doc__)
    only = re.compile(sys.argv[7] if len(sys.argv) > 7 else "")
    originals = {}
    for line in open(originals_path, encoding="utf-8"):
        key, tenant, value = line.rstrip("\n").split("\t", 2)
        if only.search(key):
            originals[key] = (tenant, value.encode())
    problems = collections.defaultdict(list)
    copies = collections.Counter()
    to_decrypt = collections.defaultdict(list)  # transit key -> [(record key, value, span)]
    for message in read_records(bootstrap, topic, group="kafka-transit-fields-check"):
        key = (message.key() or b"").decode(errors="replace")
        if not only.search(key):
            continue
        value = message.value() or b""
        copies[key] += 1
        if key not in originals:
            problems["unexpected keys on the sink"].append(key)
            continue
        found = list(CIPHERTEXT.finditer(value))
        if len(found) != 1:
            problems["values without exactly one ciphertext"].append(f"{key}: {len(found)}")
            continue
        try:
            doc = json.loads(value, parse_float=decimal.Decimal, parse_constant=str)
        except ValueError as error:
            problems["values that are not JSON"].append(f"{key}: {error}")
            continue
        if not isinstance(doc, dict) or doc.get(field) != found[0].group(1).decode():
            problems[f"ciphertexts elsewhere than /{field}"].append(key)
            continue
        tenant = originals[key][0]
        to_decrypt[key_prefix + tenant].append((key, value, found[0].span()))

    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"],
                         verify=os.environ.get("VAULT_CACERT") or True)
    checked = 0
    for transit_key, items in to_decrypt.items():
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            batch = [{"ciphertext": value[s + 1:e - 1].decode()} for _, value, (s, e) in chunk]
            answer = client.secrets.transit.decrypt_data(name=transit_key, ciphertext="",
                                                         batch_input=batch)
            for (key, value, (s, e)), result in zip(chunk, answer["data"]["batch_results"]):
                checked += 1
                if result.get("error") or result.get("plaintext") is None:
                    problems[f"ciphertexts {transit_key} does not decrypt"].append(
                        f"{key}: {result.get('error')}")
                    continue
                restored = value[:s] + base64.b64decode(result["plaintext"]) + value[e:]
                if restored != originals[key][1]:
                    problems["values not byte-identical once decrypted"].append(
                        f"{key}: sent {originals[key][1][:120]!r}, got back {restored[:120]!r}")

    missing = sorted(set(originals) - set(copies))
    if missing:
        problems["original keys missing on the sink"] = missing
    twice = sorted(k for k, n in copies.items() if n > 1 and k in originals)
    if twice and delivery == "exactly-once":
        problems["original keys more than once on the sink (read_committed)"] = twice
    delivered = sum(n for k, n in copies.items() if k in originals)
    print(f"   {topic}: {len(originals)} originals, {delivered} copies of {len(set(copies) & set(originals))} "
          f"of them ({delivered - len(set(copies) & set(originals))} duplicates), {len(missing)} missing, "
          f"{checked} ciphertexts decrypted with hvac")
    for what, examples in problems.items():
        print(f"   PROBLEM: {len(examples)} {what}, e.g. {examples[:3]}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

"""Python's RecordReader on a file of sink records and what a reader must make of each
(.ci/e2e/protect-all.sh writes it; the Go reader's TestRecordsFile and Java's
RecordsFileIT read the same file):

    python3 records_check.py RECORDS.jsonl

One JSON object a line: topic, key, value (hex, or null), headers ([name, hex or null]) as
on the sink, and either `expect` (key, value, headers as the reader must give them back:
the headers in clear but the protection header, then the sealed ones) or `refuse` (the
kind of EnvelopeError it must fail with, e.g. "authentication"). The reader requires
binding to stream and key, reads `vault:` values and envelopes of transit key
`customers`, and record keys encrypted under `customer-ids`. Vault: VAULT_ADDR,
VAULT_TOKEN (VAULT_CACERT for https).

    python3 records_check.py RECORDS.jsonl --subject-keys customers-

reads envelopes sealed per data subject instead (docs/forgetting.md): each under the key
its header names, which must start with the prefix. A record whose subject was forgotten
is refused with kind "forgotten" (`"refuse": "forgotten"` expects it) and printed, after
the summary, as a line `error: line N: subject forgotten: ...`.
"""
import argparse
import json
import os
import sys

from envelope_decrypt import EnvelopeError, RecordReader
from transit import Transit


def unhex(text):
    return None if text is None else bytes.fromhex(text)


def record_of(line: dict) -> tuple:
    return unhex(line["key"]), unhex(line["value"]), [(n, unhex(v)) for n, v in line["headers"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records")
    parser.add_argument("--subject-keys", metavar="PREFIX",
                        help="records sealed per data subject: the prefix of the subjects' key names")
    args = parser.parse_args()
    transit = Transit(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"], verify=os.environ.get("VAULT_CACERT", True))
    keys = dict(subject_keys=args.subject_keys) if args.subject_keys else dict(key="customers")
    reader = RecordReader(transit, record_keys_key="customer-ids", require_binding=["stream", "key"], **keys)
    read = refused = 0
    problems, errors = [], []
    for number, text in enumerate(open(args.records, encoding="utf-8")):
        line = json.loads(text)
        key, value, headers = record_of(line)
        try:
            got = reader.read(line["topic"], key, value, headers)
        except EnvelopeError as error:
            if error.kind == "forgotten":
                errors.append(f"error: line {number}: {error}")
            if error.kind == line.get("refuse"):
                refused += 1
            else:
                problems.append(f"line {number}: refused ({error.kind}: {error})")
            continue
        if "refuse" in line:
            problems.append(f"line {number}: read, though it must be refused ({line['refuse']})")
        elif got != record_of(line["expect"]):
            what = "key" if got[0] != record_of(line["expect"])[0] else "value" if got[1] != unhex(
                line["expect"]["value"]) else "headers"
            problems.append(f"line {number}: its {what} read back differently")
        else:
            read += 1
    reader.close()
    print(f"python reader: {read} records read back byte-identical (key, value, headers), {refused} refused as "
          f"expected, {transit.requests} Vault requests"
          + (f"; {len(errors)} of forgotten subjects" if args.subject_keys else ""))
    for error in errors:
        print(error)
    for problem in problems[:10]:
        print(f"   PROBLEM: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

"""Checks a dead-letter topic against what should be on it:

    dead_letter_check.py BOOTSTRAP TOPIC EXPECTED.tsv

EXPECTED holds key<TAB>kind<TAB>pattern lines: each key must be on TOPIC (at least once:
dead letters on the source cluster are delivered at least once), every copy with the
header kafka-transit.error.kind = kind and a kafka-transit.error reason in which the
regular expression `pattern` is found (case-insensitive). A key on TOPIC that EXPECTED
does not list is a problem too: a record that should have reached the sink was set aside.

Prints, for each kind of hostile record (the key's last `-` part), one reason as the
runner gave it; lists problems (a few examples of each) and exits 1 if any.
"""
import collections
import re
import sys

from read_topic import read_records

KIND = "kafka-transit.error.kind"
REASON = "kafka-transit.error"


def main() -> None:
    bootstrap, topic, expected_path = sys.argv[1:4]
    expected = {}
    for line in open(expected_path, encoding="utf-8"):
        key, kind, pattern = line.rstrip("\n").split("\t", 2)
        expected[key] = (kind, re.compile(pattern, re.IGNORECASE))
    problems = collections.defaultdict(list)
    seen = collections.Counter()
    samples = {}
    for message in read_records(bootstrap, topic, group="kafka-transit-dead-letter-check"):
        key = (message.key() or b"").decode(errors="replace")
        seen[key] += 1
        if key not in expected:
            problems["records dead-lettered that should have reached the sink"].append(key)
            continue
        try:
            headers = {name: (value or b"").decode(errors="replace")
                       for name, value in (message.headers() or [])}
        except Exception as error:  # noqa: BLE001 - a header the client cannot read is a finding
            problems["dead letters whose headers cannot be read"].append(f"{key}: {error}")
            continue
        kind, pattern = expected[key]
        reason = headers.get(REASON, "")
        samples.setdefault(key.rsplit("-", 1)[-1], (headers.get(KIND), reason))
        if headers.get(KIND) != kind:
            problems[f"dead letters whose {KIND} is not the expected one"].append(
                f"{key}: {headers.get(KIND)!r}, expected {kind!r}")
        if not pattern.search(reason):
            problems["reasons that do not name the problem"].append(
                f"{key}: {reason!r} does not match /{pattern.pattern}/")
    missing = sorted(set(expected) - set(seen))
    if missing:
        problems["hostile records not on the dead-letter topic"] = missing
    print(f"   {topic}: {sum(seen.values())} dead letters of {len(seen)} keys; "
          f"{len(expected) - len(missing)} of {len(expected)} hostile records there")
    for what, (kind, reason) in sorted(samples.items()):
        print(f"   {what}: {KIND}={kind} reason: {reason[:300]}")
    for what, examples in problems.items():
        print(f"   PROBLEM: {len(examples)} {what}, e.g. {examples[:3]}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

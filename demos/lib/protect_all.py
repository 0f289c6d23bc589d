"""The data and the checks of .ci/e2e/protect-all.sh: records whose keys, values and headers
carry personal data go through a protecting pipeline with every format 3 option on
(record keys encrypted, headers sealed but traceparent, bound to stream and key), and
come back through the opening pipeline. Records are JSON lines (record_file.py).

    protect_all.py make DIR COUNT TOPIC           # DIR/source.jsonl (for TOPIC) and DIR/tokens.txt
    protect_all.py leaks TOKENS FILE [--all]       # tokens found in FILE's bytes (none; --all: every one)
    protect_all.py keys SOURCE SINK                # one sink key and one partition per source key
    protect_all.py opened SOURCE OPENED            # every record restored byte for byte
    protect_all.py keyless SOURCE DEAD_LETTERS     # the records without a key, refused for compaction
    protect_all.py forge BOOTSTRAP SOURCE SINK COPY_TOPIC DIR   # forged records; DIR/forged.tsv, DIR/readers.jsonl
    protect_all.py roll BOOTSTRAP SOURCE_TOPIC SINK_TOPIC...   # records that roll every sink partition's segment
    protect_all.py compacted SOURCE BEFORE AFTER   # one record per key, the key's last

Every source record carries a unique `traceparent` header, which the pipeline keeps in
clear (keep_headers): it joins a sink or opened record to its source record without
reading anything protected. Each check prints one line and its problems (a few examples
of each), and exits 1 if there are any.
"""
import collections
import hashlib
import json
import os
import random
import sys
import time
import unicodedata

import record_file

TRACEPARENT = "traceparent"
PROTECTION = "kafka-transit.protection"
FIRST = ["Amélie", "Björn", "Chiara", "Dmitri", "Eleanor", "Farid", "Grete", "Hiroshi", "Inès", "João", "Kateřina",
         "Lars", "Maëlle", "Nikolai", "Oona", "Pál", "Quentin", "Roisín", "Søren", "Tomás", "Ugo", "Valérie",
         "Wiktoria", "Xavier", "Yusuf", "Zoë"]
LAST = ["Ångström", "Brennan", "Castellanos", "Dubois", "Eriksen", "Fontaine", "García", "Hoffmann", "Iwasaki",
        "Jovanović", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Connor", "Petrović", "Quispe", "Rossi",
        "Schäfer", "Tanaka", "Ueda", "Varga", "Whitfield", "Xu", "Yilmaz", "Zieliński"]


class Problems:
    def __init__(self):
        self.found = collections.defaultdict(list)

    def add(self, what: str, example) -> None:
        self.found[what].append(example)

    def report(self, summary: str) -> None:
        print(f"   {summary}")
        for what, examples in self.found.items():
            print(f"   PROBLEM: {len(examples)} {what}, e.g. {examples[:3]}")
        sys.exit(1 if self.found else 0)


def short(data, width: int = 40) -> str:
    return "null" if data is None else repr(bytes(data)[:width])


def traceparent(record: dict) -> bytes:
    values = [v for n, v in record["headers"] if n == TRACEPARENT]
    return values[0] if len(values) == 1 else None


# --- the data ----------------------------------------------------------------------------

def customers(count: int, rng: random.Random) -> list:
    people = []
    for n in range(count):
        first, last = FIRST[n % len(FIRST)], LAST[(n * 7 + n // len(FIRST)) % len(LAST)]
        plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower()).encode("ascii", "ignore").decode()
        plain = plain.replace("'", "")
        people.append({"name": f"{first} {last}", "email": f"{plain}.{n:04d}@example.org",
                       "ssn": f"{rng.randint(100, 899):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}",
                       "uid": f"uid-{n:06d}"})
    return people


def make(directory: str, count: int, topic: str) -> None:
    """COUNT records of COUNT // 5 customers, in random order: keyed by email (a few with no
    key), JSON values (some binary, some empty), personal data in header values and names,
    repeated and valueless headers; each customer's last record is a tombstone for one in
    twenty. traceparent comes first, so that opening gives back the headers in their order."""
    rng = random.Random(22)
    people = customers(max(1, count // 5), rng)
    order = [n % len(people) for n in range(count)]
    rng.shuffle(order)
    last_of = {person: index for index, person in enumerate(order)}
    records = []
    for seq, n in enumerate(order):
        person = people[n]
        digest = hashlib.sha256(b"protect-all %d" % seq).hexdigest()
        headers = [(TRACEPARENT, f"00-{digest[:32]}-{digest[32:48]}-01".encode()),
                   ("user-id", person["uid"].encode()),
                   ("tag", b"customer"), ("tag", person["name"].encode())]
        if seq % 4 == 0:
            headers.append((f"consent:{person['email']}", None))  # personal data in a header's name, no value
        if seq % 3 == 0:
            headers += [("note", b""), (f"x-{person['uid']}-ssn", person["ssn"].encode())]
        key = None if seq % 167 == 0 else person["email"].encode()
        if key is not None and n % 20 == 0 and last_of[n] == seq:
            value = None  # a tombstone: the customer is deleted
        elif seq % 50 == 7:
            value = b""
        elif seq % 10 == 3:
            value = b"\x89PNG\r\n\x1a\n" + person["name"].encode() + bytes(rng.getrandbits(8) for _ in range(300))
        else:
            value = json.dumps({"seq": seq, "name": person["name"], "email": person["email"], "ssn": person["ssn"],
                                "user": person["uid"], "note": "réglé ✓"}, ensure_ascii=False).encode()
        records.append({"topic": topic, "key": key, "value": value, "headers": headers})
    os.makedirs(directory, exist_ok=True)
    record_file.save(os.path.join(directory, "source.jsonl"), records)
    with open(os.path.join(directory, "tokens.txt"), "w", encoding="utf-8") as out:
        for person in people:
            for field in ("name", "email", "ssn", "uid"):
                out.write(person[field] + "\n")
    tombstones = sum(r["value"] is None for r in records)
    print(f"   {len(records)} records of {len(people)} customers ({tombstones} tombstones, "
          f"{sum(r['key'] is None for r in records)} without a key); {4 * len(people)} personal tokens")


# --- the checks --------------------------------------------------------------------------

def leaks(tokens_path: str, path: str, every: bool) -> None:
    """The tokens found in a file's bytes: none (a sink dump), or with --all every one (the
    source's dump: the search itself works)."""
    tokens = [t for t in open(tokens_path, encoding="utf-8").read().splitlines() if t]
    data = open(path, "rb").read()
    found = [t for t in tokens if t.encode() in data]
    problems = Problems()
    if every and len(found) != len(tokens):
        problems.add("tokens not found (the search does not work)", sorted(set(tokens) - set(found))[:5])
    if not every and found:
        problems.add("personal tokens in clear", found)
    problems.report(f"{os.path.basename(path)}: {len(data)} bytes, {len(found)} of {len(tokens)} personal tokens "
                    f"(names, emails, SSNs, user ids) found")


def on_sink(source: list) -> list:
    """The source records that belong on the sink: those with a key. The sink topics are
    compacted, and Kafka takes no record without a key there: the runner dead-letters
    those (see `keyless`)."""
    return [r for r in source if r["key"] is not None]


def joined(source: list, sink: list, problems: Problems) -> list:
    """(source record, sink record) pairs, joined by traceparent."""
    by_trace = {traceparent(r): r for r in on_sink(source)}
    pairs, seen = [], collections.Counter()
    for record in sink:
        trace = traceparent(record)
        if trace not in by_trace:
            problems.add("records with no source record (no or an unknown traceparent)",
                         f"p{record.get('partition')}@{record.get('offset')}")
            continue
        seen[trace] += 1
        pairs.append((by_trace[trace], record))
    for trace in by_trace:
        if not seen[trace]:
            problems.add("source records missing", trace.decode())
        elif seen[trace] > 1:
            problems.add("source records there more than once", trace.decode())
    return pairs


def keys(source_path: str, sink_path: str) -> None:
    """Each source key has one sink key, not itself, on one partition, and no other source
    key has it; its records are in their source order; null keys stay null."""
    source, sink = record_file.load(source_path), record_file.load(sink_path)
    problems = Problems()
    pairs = joined(source, sink, problems)
    sink_keys, partitions, owners = collections.defaultdict(set), collections.defaultdict(set), {}
    order = collections.defaultdict(list)
    position = {traceparent(r): i for i, r in enumerate(source)}
    for src, out in pairs:
        if src["key"] is None:
            if out["key"] is not None:
                problems.add("null keys that are not null on the sink", short(out["key"]))
            continue
        if not out["key"] or not out["key"].startswith(b"vault:v"):
            problems.add("sink keys that are no Vault ciphertext", short(out["key"]))
        sink_keys[src["key"]].add(out["key"])
        partitions[src["key"]].add(out["partition"])
        if owners.setdefault(out["key"], src["key"]) != src["key"]:
            problems.add("sink keys shared by two source keys", short(out["key"]))
        order[(out["partition"], src["key"])].append((out["offset"], position[traceparent(src)]))
    for key, outs in sink_keys.items():
        if len(outs) != 1:
            problems.add("source keys with more than one sink key", f"{len(outs)} sink keys")
        if len(partitions[key]) != 1:
            problems.add("source keys on more than one partition", sorted(partitions[key]))
    for offsets in order.values():
        if [p for _, p in sorted(offsets)] != sorted(p for _, p in offsets):
            problems.add("keys whose records are out of their source order", len(offsets))
    used = collections.Counter(p for ps in partitions.values() for p in ps)
    problems.report(f"{os.path.basename(sink_path)}: {len(pairs)} records; {len(sink_keys)} source keys -> "
                    f"{len(owners)} sink keys, one each, on one partition each (keys per partition: "
                    f"{dict(sorted(used.items()))}), in source order per key")


def expected_opened(src: dict) -> tuple:
    """What opening gives back: the source record; a tombstone keeps only its kept headers
    (its sealed ones had no value to travel in)."""
    headers = src["headers"] if src["value"] is not None else [(n, v) for n, v in src["headers"] if n == TRACEPARENT]
    return src["key"], src["value"], headers


def opened(source_path: str, opened_path: str) -> None:
    source, out = record_file.load(source_path), record_file.load(opened_path)
    problems = Problems()
    pairs = joined(source, out, problems)
    identical = 0
    for src, got in pairs:
        want = expected_opened(src)
        if (got["key"], got["value"], got["headers"]) == want:
            identical += 1
            continue
        what = "keys" if got["key"] != want[0] else "values" if got["value"] != want[1] else "headers"
        problems.add(f"records whose {what} came back differently", traceparent(src).decode())
    tombstones = sum(src["value"] is None for src, _ in pairs)
    problems.report(f"{os.path.basename(opened_path)}: {identical} of {len(on_sink(source))} records byte-identical to "
                    f"their source (key, value, headers in order with repeats and valueless ones; "
                    f"{tombstones} tombstones with their kept headers only)")


def keyless(source_path: str, dead_path: str) -> None:
    """The protecting runner's dead letters (on the source cluster, with the record as it
    came) are exactly the records without a key, refused for the compacted sink topic
    before they were sent: kind sink-rejected, the reason naming cleanup.policy."""
    source, dead = record_file.load(source_path), record_file.load(dead_path)
    want = {traceparent(r): r for r in source if r["key"] is None}
    problems = Problems()
    seen = set()
    for letter in dead:
        trace = traceparent(letter)
        headers = dict(letter["headers"])
        if trace not in want:
            problems.add("records dead-lettered that have a key", short(letter["key"]))
            continue
        seen.add(trace)
        reason = (headers.get("kafka-transit.error") or b"").decode(errors="replace")
        if headers.get("kafka-transit.error.kind") != b"sink-rejected" or "cleanup.policy" not in reason:
            problems.add("dead letters of another kind or reason", f"{headers.get('kafka-transit.error.kind')}: "
                                                                  f"{reason[:200]}")
        if letter["value"] != want[trace]["value"]:
            problems.add("dead letters that are not the source record", trace.decode())
    for trace in set(want) - seen:
        problems.add("records without a key not dead-lettered", trace.decode())
    reasons = {(dict(d["headers"]).get("kafka-transit.error") or b"").decode(errors="replace") for d in dead}
    problems.report(f"{os.path.basename(dead_path)}: {len(dead)} dead letters of {len(want)} records without a key "
                    f"(reason: {sorted(reasons)[0][:220] if reasons else 'none'})")


def forge(bootstrap: str, source_path: str, sink_path: str, copy_topic: str, directory: str) -> None:
    """Alice's value (and headers) under Bob's sink key on Bob's partition of the sink
    topic, and Alice's record as it is in COPY_TOPIC; DIR/forged.tsv for dead_letter_check
    and DIR/readers.jsonl: every sink record with what a reader must make of it, and the
    two forged ones, which it must refuse."""
    source, sink = record_file.load(source_path), record_file.load(sink_path)
    problems = Problems()
    pairs = joined(source, sink, problems)
    full = [(s, o) for s, o in pairs if s["key"] and s["value"] and s["value"].startswith(b"{")]
    if len(full) < 2:
        problems.add("sink records to forge from (none with a key and a JSON value)", len(full))
        problems.report("nothing forged")
    alice = full[0]
    bob = next(p for p in full if p[0]["key"] != alice[0]["key"])
    topic = alice[1]["topic"]
    under_bob = dict(alice[1], key=bob[1]["key"], partition=bob[1]["partition"])
    copied = dict(alice[1], topic=copy_topic)
    record_file.produce(bootstrap, [under_bob], at_partition=True)
    record_file.produce(bootstrap, [copied])
    with open(os.path.join(directory, "forged.tsv"), "w", encoding="utf-8") as out:
        for forged in (under_bob, copied):
            out.write(f"{forged['key'].decode()}\tinvalid-input\tmessage authentication failed\n")
    with open(os.path.join(directory, "readers.jsonl"), "w", encoding="utf-8") as out:
        for src, record in pairs:
            key, value, sealed = expected_opened(src)
            kept = [(n, v) for n, v in record["headers"] if n != PROTECTION]
            want = {"key": key, "value": value, "headers": kept + [(n, v) for n, v in sealed if n != TRACEPARENT]}
            line = record_file.encode({k: record[k] for k in ("topic", "key", "value", "headers")})
            out.write(json.dumps(dict(line, expect=record_file.encode(want))) + "\n")
        for forged in (under_bob, copied):
            line = record_file.encode({k: forged[k] for k in ("topic", "key", "value", "headers")})
            out.write(json.dumps(dict(line, refuse="authentication")) + "\n")
    problems.report(f"forged on {topic}: Alice's value under Bob's key (partition {bob[1]['partition']}) and a "
                    f"copy of Alice's record in {copy_topic}; {len(pairs)} + 2 records for the readers")


def roll_record(topic: str, n: int) -> dict:
    return {"topic": topic, "key": b"roll-%d" % n, "value": b"roll", "headers": [(TRACEPARENT, roll_trace(n))]}


def roll_trace(n: int) -> bytes:
    digest = hashlib.sha256(b"roll %d" % n).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01".encode()


ROLL_TRACES = {roll_trace(n) for n in range(60)}


def is_roll(record: dict) -> bool:
    return traceparent(record) in ROLL_TRACES


def roll(bootstrap: str, source_topic: str, sink_topics: list) -> None:
    """Records (no personal data) through the pipeline until every partition of every sink
    topic ends with one: appended after segment.ms, it rolls the partition's active
    segment, so that the cleaner may compact every data record."""
    sent, uncovered = 0, {}
    while sent < len(ROLL_TRACES):
        record_file.produce(bootstrap, [roll_record(source_topic, sent + i) for i in range(12)])
        sent += 12
        deadline = time.monotonic() + 60
        while True:
            dumps = {topic: record_file.dump(bootstrap, topic) for topic in sink_topics}
            if all(sum(map(is_roll, d)) >= sent for d in dumps.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        uncovered = {}
        for topic, records in dumps.items():
            last = {record["partition"]: record for record in records}  # each partition in offset order
            uncovered[topic] = sorted(p for p, record in last.items() if not is_roll(record))
        if not any(uncovered.values()):
            print(f"   {sent} roll records: every partition of {', '.join(sink_topics)} ends with one")
            return
    sys.exit(f"   PROBLEM: after {sent} roll records, partitions that do not end with one: {uncovered}")


def compacted(source_path: str, before_path: str, sink_path: str) -> None:
    """After cleaning: one record per sink key, the last its source key had (a tombstone
    for a deleted customer). BEFORE is the sink topic before the forgeries: it gives each
    source key's sink key. A forged record (another key's value, with its traceparent)
    appended under a key is that key's last record: the cleaner keeps it (Kafka cannot
    tell; every reader refuses it), and the key's own records are gone."""
    source = record_file.load(source_path)
    sink = [r for r in record_file.load(sink_path) if not is_roll(r)]
    by_trace = {traceparent(r): r for r in source}
    sink_key = {}
    for record in record_file.load(before_path):
        src = by_trace.get(traceparent(record))
        if src is not None and src["key"] is not None:
            sink_key[src["key"]] = record["key"]
    last_trace = {}
    for record in source:
        if record["key"] is not None:
            last_trace[record["key"]] = traceparent(record)
    per_key = collections.defaultdict(list)
    displaced = set()
    for record in sink:
        src = by_trace.get(traceparent(record))
        if src is None or src["key"] is None:
            continue
        if record["key"] != sink_key.get(src["key"]):
            displaced.add(record["key"])  # a forged record: not its source key's
            continue
        per_key[src["key"]].append(record)
    problems = Problems()
    for key, records in per_key.items():
        if len(records) != 1:
            problems.add("keys with more than one record left", f"{len(records)} records")
        elif traceparent(records[0]) != last_trace[key]:
            problems.add("keys whose record left is not their last", short(records[0]["key"]))
    missing = {key for key in set(last_trace) - set(per_key) if sink_key.get(key) not in displaced}
    if missing:
        problems.add("keys with no record left", len(missing))
    tombstones = sum(r[0]["value"] is None for r in per_key.values())
    keyed = sum(r["key"] is not None for r in source)
    problems.report(f"{os.path.basename(sink_path)}: {len(sink)} records left of {keyed} keyed ones: "
                    f"{len(per_key)} keys, {sum(len(r) for r in per_key.values())} records with a key "
                    f"({tombstones} tombstones); {len(displaced)} forged record(s) under another key, kept as Kafka cannot tell")


def main() -> None:
    command, *args = sys.argv[1:] or [""]
    if command == "make":
        make(args[0], int(args[1]), args[2])
    elif command == "leaks":
        leaks(args[0], args[1], "--all" in args[2:])
    elif command == "keys":
        keys(*args)
    elif command == "opened":
        opened(*args)
    elif command == "keyless":
        keyless(*args)
    elif command == "forge":
        forge(*args)
    elif command == "roll":
        roll(args[0], args[1], args[2:])
    elif command == "compacted":
        compacted(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

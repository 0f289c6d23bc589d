"""The data and the checks of .ci/e2e/forget.sh (docs/forgetting.md): records of many data
subjects sealed per subject, some subjects forgotten, and what is left of them. Records
are JSON lines (record_file.py).

    forget_check.py make DIR TOPIC COUNT SUBJECTS FORGOTTEN
        # DIR/source.jsonl (COUNT records of SUBJECTS customers, keyed by their id),
        # DIR/late.jsonl (10 more: one of a forgotten subject, 9 of others),
        # DIR/subjects.txt, DIR/forgotten.txt (FORGOTTEN ids), DIR/tokens.txt (ids, names, e-mails)
    forget_check.py sealing-dead-letters DIR DEAD.jsonl
        # the sealing runner's dead letters: the late record of a forgotten subject, alone
    forget_check.py opened DIR SINK.jsonl OPENED.jsonl DEAD.jsonl
        # every record of the others restored byte-identical; the forgotten subjects' records
        # dead-lettered ("subject forgotten"), and nothing else
    forget_check.py readers DIR SINK.jsonl OUT.jsonl
        # the records file the readers take: each sink record, expected back as its source
        # record, or "refuse": "forgotten" for a forgotten subject's
    forget_check.py reader-forgotten READERS.jsonl OUTPUT
        # the reader's "subject forgotten" error lines (records_check.py's and Go's
        # "error: line N: subject forgotten: ...", Java's {"line":N,"error":"subject forgotten: ..."})
        # are exactly the lines that expect a refusal
    forget_check.py open-file SOURCE_DIR OPENED.jsonl
        # envelope_decrypt.py open-file's output: the others opened byte-identical, the
        # forgotten subjects' records failed as "forgotten", nothing else
    forget_check.py key-names DIR HMACS.jsonl FORGET_OUTPUTS.txt SEALED.jsonl >NAMES.tsv
        # the subjects' key names from Vault's HMACs (batch answers of transit/hmac, one a line), checked
        # against the names `kafka-transit forget` printed and the key each sealed record names
        # (its envelope's header); id<TAB>name<TAB>forgotten|kept
    forget_check.py hmac-requests DIR N    # transit/hmac batch requests for every subject, N a line
    forget_check.py vault-keys NAMES.tsv LIST.json
        # LIST transit/keys: none of the forgotten subjects' keys, every other subject's
    forget_check.py reasons-start DEAD.jsonl PREFIX
        # every dead letter's reason (kafka-transit.error) starts with PREFIX
    forget_check.py leaks TOKENS FILE [--all]
        # the personal tokens found in FILE's bytes: none (a sink's dump, a log), or with
        # --all every one (the source's dump: the search works)

Every record carries a unique `traceparent` header (in clear, no personal data): it joins a
sink, opened or dead-lettered record to its source record without opening anything. Each
check prints one line and its problems (a few examples of each), and exits 1 if there are
any.
"""
import base64
import collections
import hashlib
import json
import os
import random
import re
import sys
import unicodedata

import record_file
# The customers' names, the findings and the trace header are protect-all.sh's too.
from protect_all import FIRST, LAST, TRACEPARENT, Problems, leaks, traceparent  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from envelope_decrypt import parse_header  # noqa: E402 - demos/python, the reference reader

PROTECTION = "kafka-transit.protection"
ERROR = "kafka-transit.error"
FORGOTTEN = "subject forgotten"
LATE = 10


def header(record: dict, name: str) -> str:
    values = [v for n, v in record["headers"] if n == name]
    return (values[-1] or b"").decode(errors="replace") if values else ""


def lines_of(path: str) -> list:
    return [line for line in open(path, encoding="utf-8").read().splitlines() if line]


# --- the data ----------------------------------------------------------------------------

def subject_id(n: int) -> str:
    return f"customer-{n:04d}"


def person(n: int) -> dict:
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST) + 3 * n) % len(LAST)]
    plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower()).encode("ascii", "ignore").decode()
    return {"id": subject_id(n), "name": f"{first} {last}", "email": f"{plain.replace(chr(39), '')}.{n:04d}@example.org"}


def record(topic: str, who: dict, seq: int, counter: int) -> dict:
    """A customer's record: keyed by the subject's id, a JSON value with their personal data
    and a counter, and a few headers without personal data (they travel in clear)."""
    digest = hashlib.sha256(b"forget %d" % seq).hexdigest()
    headers = [(TRACEPARENT, f"00-{digest[:32]}-{digest[32:48]}-01".encode()),
               ("content-type", b"application/json"),
               ("source-system", b"crm")]
    if seq % 7 == 0:
        headers.append(("replayed", None))  # valueless: must come back valueless
    value = {"customer": {"id": who["id"], "name": who["name"], "email": who["email"]},
             "event": ["signup", "order", "address-change", "newsletter"][seq % 4],
             "seq": seq, "counter": counter, "note": "réglé ✓"}
    return {"topic": topic, "key": who["id"].encode(), "value": json.dumps(value, ensure_ascii=False).encode(),
            "headers": headers}


def make(directory: str, topic: str, count: int, subjects: int, forgotten: int) -> None:
    rng = random.Random(25)
    people = [person(n) for n in range(subjects)]
    order = [n % subjects for n in range(count)]
    rng.shuffle(order)
    counters = collections.Counter()
    records = []
    for seq, n in enumerate(order):
        counters[n] += 1
        records.append(record(topic, people[n], seq, counters[n]))
    chosen = sorted(rng.sample(range(subjects), forgotten))
    others = [n for n in range(subjects) if n not in set(chosen)]
    late_subjects = [chosen[0]] + rng.sample(others, LATE - 1)
    late = []
    for i, n in enumerate(late_subjects):
        counters[n] += 1
        late.append(record(topic, people[n], count + i, counters[n]))
    os.makedirs(directory, exist_ok=True)
    record_file.save(os.path.join(directory, "source.jsonl"), records)
    record_file.save(os.path.join(directory, "late.jsonl"), late)
    with open(os.path.join(directory, "subjects.txt"), "w", encoding="utf-8") as out:
        out.writelines(p["id"] + "\n" for p in people)
    with open(os.path.join(directory, "forgotten.txt"), "w", encoding="utf-8") as out:
        out.writelines(people[n]["id"] + "\n" for n in chosen)
    with open(os.path.join(directory, "tokens.txt"), "w", encoding="utf-8") as out:
        tokens = dict.fromkeys(t for p in people for t in (p["id"], p["name"], p["email"]))
        out.writelines(t + "\n" for t in tokens)
    per = collections.Counter(order)
    print(f"   {len(records)} records of {len(people)} customers ({min(per.values())}-{max(per.values())} each), "
          f"{len(chosen)} of them to forget ({sum(per[n] for n in chosen)} records); {len(late)} late records "
          f"(one of a forgotten customer); {len(tokens)} personal tokens (ids, names, e-mails)")


class Data:
    """make's files, read back."""

    def __init__(self, directory: str):
        self.source = record_file.load(os.path.join(directory, "source.jsonl"))
        self.late = record_file.load(os.path.join(directory, "late.jsonl"))
        self.subjects = lines_of(os.path.join(directory, "subjects.txt"))
        self.forgotten = set(lines_of(os.path.join(directory, "forgotten.txt")))
        self.by_trace = {traceparent(r): r for r in self.source + self.late}

    def is_forgotten(self, src: dict) -> bool:
        return src["key"].decode() in self.forgotten

    def late_forgotten(self) -> list:
        return [r for r in self.late if self.is_forgotten(r)]

    def sealed(self) -> list:
        """The source records that the sealing runner seals: all but the late one of a
        forgotten subject (refused: a forgotten subject stays forgotten)."""
        return self.source + [r for r in self.late if not self.is_forgotten(r)]


def join(data: Data, records: list, what: str, problems: Problems) -> list:
    """(source record, record) pairs by traceparent; a record with none is a problem."""
    pairs = []
    for got in records:
        src = data.by_trace.get(traceparent(got))
        if src is None:
            problems.add(f"{what} records with no source record (no or an unknown traceparent)",
                         f"p{got.get('partition')}@{got.get('offset')}")
            continue
        pairs.append((src, got))
    return pairs


def unstamped(headers: list) -> list:
    """Headers without the runner's stamps (kafka-transit.*), which readers give back."""
    return [(n, v) for n, v in headers if not n.startswith("kafka-transit.")]


def unstamp(record: dict) -> dict:
    """A record as a reader gave it back, without the stamps; a protection header left in
    is kept, so that it counts as a difference."""
    return dict(record, headers=[(n, v) for n, v in record["headers"]
                                 if n == PROTECTION or not n.startswith("kafka-transit.")])


def same(src: dict, got: dict) -> str:
    """What differs between a source record and one given back ("" if nothing)."""
    for part in ("key", "value", "headers"):
        if src[part] != got[part]:
            return part
    return ""


# --- the checks --------------------------------------------------------------------------

def sealing_dead_letters(directory: str, dead_path: str) -> None:
    data, dead = Data(directory), record_file.load(dead_path)
    problems = Problems()
    want = {traceparent(r) for r in data.late_forgotten()}
    seen = set()
    for src, letter in join(data, dead, "dead-lettered", problems):
        trace = traceparent(src)
        if trace not in want:
            problems.add("records dead-lettered that should have been sealed", f"seq {json.loads(src['value'])['seq']}")
            continue
        seen.add(trace)
        if "forgotten" not in header(letter, ERROR):
            problems.add("dead letters whose reason does not say forgotten", header(letter, ERROR)[:200])
        if (letter["key"], letter["value"]) != (src["key"], src["value"]):
            problems.add("dead letters that are not the record as it came", trace.decode())
    for trace in want - seen:
        problems.add("records of a forgotten subject not dead-lettered (sealed again?)", trace.decode())
    reasons = sorted({header(d, ERROR) for d in dead})
    problems.report(f"{os.path.basename(dead_path)}: {len(dead)} dead letter(s), {len(seen)} of {len(want)} late "
                    f"record(s) of a forgotten subject (kind {sorted({header(d, ERROR + '.kind') for d in dead})}, "
                    f"reason: {reasons[0][:200] if reasons else 'none'})")


def opened(directory: str, sink_path: str, opened_path: str, dead_path: str) -> None:
    data = Data(directory)
    sink, out, dead = (record_file.load(p) for p in (sink_path, opened_path, dead_path))
    problems = Problems()
    sealed = data.sealed()
    want_open = {traceparent(r) for r in sealed if not data.is_forgotten(r)}
    want_dead = {traceparent(r) for r in sealed if data.is_forgotten(r)}
    opened_seen, identical = collections.Counter(), 0
    for src, got in join(data, out, "opened", problems):
        trace = traceparent(src)
        opened_seen[trace] += 1
        if trace not in want_open:
            problems.add("records of forgotten subjects opened", trace.decode())
        elif (difference := same(src, got)):
            problems.add(f"records whose {difference} came back differently", trace.decode())
        elif opened_seen[trace] == 1:
            identical += 1
    sink_by_trace = {traceparent(r): r for r in sink}
    dead_seen = collections.Counter()
    reasons, kinds = collections.Counter(), collections.Counter()
    for src, letter in join(data, dead, "dead-lettered", problems):
        trace = traceparent(src)
        dead_seen[trace] += 1
        if trace not in want_dead:
            problems.add("records of other subjects dead-lettered", f"{trace.decode()}: {header(letter, ERROR)[:200]}")
            continue
        reason = header(letter, ERROR)
        reasons[reason] += 1
        kinds[header(letter, ERROR + ".kind")] += 1
        if FORGOTTEN not in reason:
            problems.add(f"dead letters whose reason does not say \"{FORGOTTEN}\"", reason[:200])
        on_sink = sink_by_trace.get(trace)
        if on_sink is None or (letter["key"], letter["value"]) != (on_sink["key"], on_sink["value"]):
            problems.add("dead letters that are not the sealed record as it came", trace.decode())
    for trace in want_open - set(opened_seen):
        problems.add("records of other subjects not restored", trace.decode())
    for trace in want_dead - set(dead_seen):
        problems.add("records of forgotten subjects not dead-lettered", trace.decode())
    for what, seen in (("restored", opened_seen), ("dead-lettered", dead_seen)):
        twice = [t.decode() for t, n in seen.items() if n > 1]
        if twice:
            problems.add(f"records {what} more than once", twice)
    leaked = [r for r in reasons if any(s in r for s in data.subjects)]
    if leaked:
        problems.add("dead-letter reasons that name a subject", leaked[:1])
    reason = max(reasons, key=reasons.get) if reasons else "none"
    problems.report(f"{os.path.basename(opened_path)}: {identical} of {len(want_open)} records of the other "
                    f"{len(set(data.subjects) - data.forgotten)} subjects byte-identical to their source (key, value, "
                    f"headers); {os.path.basename(dead_path)}: {sum(dead_seen.values())} dead letters, "
                    f"{len(set(dead_seen) & want_dead)} of the {len(want_dead)} records of the {len(data.forgotten)} "
                    f"forgotten subjects (kind {dict(kinds)}; reason: {reason[:160]})")


def readers(directory: str, sink_path: str, out_path: str) -> None:
    data, sink = Data(directory), record_file.load(sink_path)
    problems = Problems()
    counts = collections.Counter()
    pairs = join(data, sink, "sink", problems)
    seen = collections.Counter(traceparent(src) for src, _ in pairs)
    missing = [traceparent(r).decode() for r in data.source if not seen[traceparent(r)]]
    if missing:
        problems.add("source records not on the sink", missing)
    twice = [t.decode() for t, n in seen.items() if n > 1]
    if twice:
        problems.add("source records on the sink more than once", twice)
    with open(out_path, "w", encoding="utf-8") as out:
        for src, got in pairs:
            line = record_file.encode({k: got[k] for k in ("topic", "key", "value", "headers")})
            # A reader gives back the headers in clear but the protection header: the
            # source's, and the runner's stamps (kafka-transit.policy, kafka-transit.key).
            kept = [(n, v) for n, v in got["headers"] if n != PROTECTION]
            if unstamped(kept) != src["headers"]:
                problems.add("sink records whose headers in clear are not their source's and stamps",
                             traceparent(src).decode())
            if data.is_forgotten(src):
                line["refuse"] = "forgotten"
                counts["refuse"] += 1
            else:
                line["expect"] = record_file.encode({"key": src["key"], "value": src["value"], "headers": kept})
                counts["expect"] += 1
            out.write(json.dumps(line) + "\n")
    problems.report(f"{os.path.basename(out_path)}: {counts['expect']} records to read back (key and value as their "
                    f"source, headers as the source's and the stamps), {counts['refuse']} of forgotten subjects to "
                    f"refuse")


LINE = re.compile(r'^error: line (\d+): subject forgotten|^\{"line":(\d+),"error":"subject forgotten')


def reader_forgotten(readers_path: str, output_path: str) -> None:
    """The reader's forgotten-subject lines are exactly the lines refuse "forgotten"."""
    want = {n for n, text in enumerate(lines_of(readers_path)) if json.loads(text).get("refuse") == "forgotten"}
    got = collections.Counter()
    for text in open(output_path, encoding="utf-8", errors="replace"):
        match = LINE.match(text.strip())
        if match:
            got[int(match.group(1) or match.group(2))] += 1
    problems = Problems()
    if not want:
        problems.add("lines that expect a refusal (none)", readers_path)
    for n in sorted(set(got) - want):
        problems.add("records reported forgotten that are not", f"line {n}")
    for n in sorted(want - set(got)):
        problems.add("records of forgotten subjects not reported forgotten", f"line {n}")
    twice = [n for n, c in got.items() if c > 1]
    if twice:
        problems.add("records reported more than once", twice)
    problems.report(f"{sum(got.values())} \"{FORGOTTEN}\" lines, {len(set(got) & want)} of the {len(want)} expected")


def open_file(directory: str, opened_path: str) -> None:
    data = Data(directory)
    problems = Problems()
    lines = [json.loads(text) for text in lines_of(opened_path)]
    identical, forgotten = 0, 0
    seen = collections.Counter()
    for text in lines:
        src = data.by_trace.get(bytes.fromhex(next((v for n, v in text["headers"] if n == TRACEPARENT), "") or ""))
        if src is not None:
            seen[traceparent(src)] += 1
        if src is None:
            problems.add("records with no source record", text.get("offset"))
        elif "error" in text:
            if not data.is_forgotten(src):
                problems.add("records of other subjects not opened", f"{text['kind']}: {text['error'][:160]}")
            elif text.get("kind") != "forgotten" or not text["error"].startswith(FORGOTTEN):
                problems.add("forgotten subjects' records failed otherwise", f"{text['kind']}: {text['error'][:160]}")
            else:
                forgotten += 1
        elif data.is_forgotten(src):
            problems.add("records of forgotten subjects opened", text.get("offset"))
        elif (difference := same(src, unstamp(record_file.decode(text)))):
            problems.add(f"records whose {difference} came back differently", text.get("offset"))
        else:
            identical += 1
    missing = [traceparent(r).decode() for r in data.source if not seen[traceparent(r)]]
    if missing:
        problems.add("source records not in the file", missing)
    problems.report(f"{os.path.basename(opened_path)}: {len(lines)} records, {identical} opened byte-identical to "
                    f"their source, {forgotten} failed as \"{FORGOTTEN}\"")


def hmac_requests(directory: str, size: int) -> None:
    subjects = lines_of(os.path.join(directory, "subjects.txt"))
    for start in range(0, len(subjects), size):
        print(json.dumps({"batch_input": [{"input": base64.b64encode(s.encode()).decode()}
                                          for s in subjects[start:start + size]]}))


def key_name(prefix: str, hmac: str) -> str:
    """names/src/lib.rs subject_key_name: the prefix, then the first 24 bytes of Vault's
    HMAC (vault:v1:<base64>) in lowercase hex."""
    assert hmac.startswith("vault:v1:"), hmac
    return prefix + base64.b64decode(hmac[len("vault:v1:"):])[:24].hex()


def envelope_key(value: bytes) -> str:
    """The transit key an envelope's header names (docs/envelope-format.md)."""
    return parse_header(value)["key_name"]


def key_names(directory: str, hmacs_path: str, forget_outputs: str, sealed_path: str) -> None:
    data = Data(directory)
    subjects = data.subjects
    forgotten = set(lines_of(os.path.join(directory, "forgotten.txt")))
    results = [r for line in lines_of(hmacs_path) for r in json.loads(line)["data"]["batch_results"]]
    problems = Problems()
    if len(results) != len(subjects):
        problems.add("HMACs missing", f"{len(results)} of {len(subjects)}")
    names = {s: key_name("customers-", r["hmac"]) for s, r in zip(subjects, results)}
    printed = set(re.findall(r"transit key (customers-[0-9a-f]+)", open(forget_outputs).read()))
    want = {names[s] for s in forgotten}
    if printed != want:
        problems.add("key names forget printed that are not the forgotten subjects' (or missing)",
                     sorted(printed ^ want))
    if len(set(names.values())) != len(names):
        problems.add("subjects sharing a key name", len(names) - len(set(names.values())))
    sealed = join(data, record_file.load(sealed_path), "sealed", problems)
    for src, got in sealed:
        under = envelope_key(got["value"])
        if under != names.get(src["key"].decode()):
            problems.add("sealed records not under their subject's key", f"{under} ({traceparent(src).decode()})")
    for s in subjects:
        sys.stdout.write(f"{s}\t{names[s]}\t{'forgotten' if s in forgotten else 'kept'}\n")
    sys.stdout.flush()
    print_to = sys.stderr
    for what, examples in problems.found.items():
        print(f"   PROBLEM: {len(examples)} {what}, e.g. {examples[:3]}", file=print_to)
    print(f"   {len(names)} subjects' key names from Vault's HMAC; the {len(printed)} names forget printed are the "
          f"{len(want)} forgotten subjects'; each of the {len(sealed)} sealed records names its subject's key",
          file=print_to)
    sys.exit(1 if problems.found else 0)


def vault_keys(names_path: str, list_path: str) -> None:
    rows = [line.split("\t") for line in lines_of(names_path)]
    keys = set(json.load(open(list_path))["data"]["keys"])
    problems = Problems()
    forgotten = [name for _, name, state in rows if state == "forgotten"]
    kept = [name for _, name, state in rows if state == "kept"]
    if not forgotten or not kept:
        problems.add("subjects' key names to look for (none)", names_path)
    for name in forgotten:
        if name in keys:
            problems.add("forgotten subjects' keys still listed", name)
    for name in kept:
        if name not in keys:
            problems.add("other subjects' keys missing", name)
    subject_keys = {k for k in keys if k.startswith("customers-")}
    strays = subject_keys - set(kept)
    if strays:
        problems.add("subject keys of no subject", sorted(strays))
    problems.report(f"LIST transit/keys: {len(keys)} keys, {len(subject_keys)} subjects' (customers-*): "
                    f"{len(set(kept) & keys)} of the {len(kept)} other subjects', "
                    f"{len(set(forgotten) & keys)} of the {len(forgotten)} forgotten ones'; others: "
                    f"{sorted(keys - subject_keys)}")


def reasons_start(dead_path: str, prefix: str) -> None:
    dead = record_file.load(dead_path)
    reasons = collections.Counter(header(d, ERROR) for d in dead)
    problems = Problems()
    for reason, count in reasons.items():
        if not reason.startswith(prefix):
            problems.add(f"dead-letter reasons that do not start \"{prefix}\"", f"{count} dead letters: {reason[:200]}")
    problems.report(f"{os.path.basename(dead_path)}: {len(dead)} dead letters, "
                    f"{sum(c for r, c in reasons.items() if r.startswith(prefix))} with a reason starting \"{prefix}\"")


def main() -> None:
    command, *args = sys.argv[1:] or [""]
    if command == "make":
        make(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif command == "sealing-dead-letters":
        sealing_dead_letters(*args)
    elif command == "opened":
        opened(*args)
    elif command == "readers":
        readers(*args)
    elif command == "reader-forgotten":
        reader_forgotten(*args)
    elif command == "open-file":
        open_file(*args)
    elif command == "hmac-requests":
        hmac_requests(args[0], int(args[1]))
    elif command == "key-names":
        key_names(*args)
    elif command == "vault-keys":
        vault_keys(*args)
    elif command == "reasons-start":
        reasons_start(*args)
    elif command == "leaks":
        leaks(args[0], args[1], "--all" in args[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/mirror.sh's helper: preload a topic, watch one copier, and report.

  mirror_measure.py produce BOOTSTRAP TOPIC --records N --value-bytes B --partitions P
  mirror_measure.py watch BOOTSTRAP TOPIC --records N --value-bytes B --pid PID --label L
                          --run R --timeout S --json OUT
  mirror_measure.py delete BOOTSTRAP TOPIC
  mirror_measure.py report OUT.json RESULT.json...

`watch` samples the sink topic's end offsets (one ListOffsets request for every
partition) and the copier's CPU time (utime + stime of /proc/PID/stat, every thread) every
0.1 s. The steady-state window opens at the first sample with at least 10% of the records
on the sink and closes at the first with at least 90%; rate and CPU are over that window.
It fails (exit 1) if the copier dies, if the sink does not reach N records within the
timeout, or if it holds more than N records (duplicates) after settling.
"""

import argparse
import json
import os
import statistics
import sys
import time

from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

SAMPLE_SECONDS = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def partitions_of(client, topic):
    """The topic's partitions, or None while it does not exist (yet)."""
    metadata = client.list_topics(topic, timeout=10)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        return None
    return [TopicPartition(topic, p) for p in sorted(info.partitions)]


def end_offsets(client, partitions):
    """Sum of the partitions' end offsets: the records on a topic nothing deletes."""
    futures = client.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=10)
    return sum(future.result().offset for future in futures.values())


def produce(args):
    client = admin(args.bootstrap)
    futures = client.create_topics([NewTopic(args.topic, args.partitions, 1)])
    futures[args.topic].result()
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "linger.ms": 50,
        "batch.size": 1048576,
        "queue.buffering.max.kbytes": 1048576,
        "queue.buffering.max.messages": 1000000,
        "acks": 1,
    })
    # Incompressible values (no copier here compresses, but none should get it for free),
    # 64 distinct ones so generating them costs nothing.
    values = [os.urandom(args.value_bytes) for _ in range(64)]
    errors = []

    def delivered(error, _message):
        if error is not None:
            errors.append(error)

    started = time.monotonic()
    for i in range(args.records):
        key = b"k%09d" % i
        while True:
            try:
                producer.produce(args.topic, values[i & 63], key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i & 4095 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        sys.exit(f"preload failed: {left} record(s) not delivered, {len(errors)} error(s): {errors[:3]}")
    seconds = time.monotonic() - started
    have = end_offsets(client, partitions_of(client, args.topic))
    if have != args.records:
        sys.exit(f"preload: {args.topic} holds {have} records, expected {args.records}")
    # The first consumer group on a cluster creates __consumer_offsets (about 2-3 s): do it
    # now on both, so that no copier pays for it (MirrorMaker's Connect group lives on the
    # sink, kafka-transit's consumer group on the source).
    for bootstrap in [args.bootstrap] + args.warm:
        warm_group_coordinator(bootstrap)
    print(f"preloaded {have} records of {args.value_bytes} B into {args.topic} "
          f"({args.partitions} partitions) in {seconds:.1f}s", file=sys.stderr)


def warm_group_coordinator(bootstrap):
    client = admin(bootstrap)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.describe_consumer_groups(["mirror-bench-warmup"], request_timeout=10)[
                "mirror-bench-warmup"].result()
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def watch(args):
    client = admin(args.bootstrap)
    # Seconds count from the copier's start (--launched, a Unix time), not this process's.
    started = args.launched or time.time()
    deadline = started + args.timeout
    partitions = None
    samples = []  # (seconds since start, records on the sink, copier CPU seconds)

    def fail(message):
        result = {"label": args.label, "run": args.run, "error": message}
        with open(args.json, "w") as out:
            json.dump(result, out)
        sys.exit(f"{args.label} (run {args.run}): {message}")

    while True:
        now = time.time()
        if not alive(args.pid):
            fail(f"the copier (pid {args.pid}) exited; {samples[-1][1] if samples else 0} of "
                 f"{args.records} records on the sink")
        if not samples or samples[-1][1] == 0:
            if now - started > args.first_record_timeout:
                fail(f"no record on the sink after {args.first_record_timeout:.0f}s")
        if now > deadline:
            fail(f"{samples[-1][1] if samples else 0} of {args.records} records on the sink "
                 f"after {args.timeout}s")
        try:
            if partitions is None:
                partitions = partitions_of(client, args.topic)
            count = end_offsets(client, partitions) if partitions else 0
        except KafkaException:
            # A topic just created: its leaders may not be known yet. Ask again.
            time.sleep(SAMPLE_SECONDS)
            continue
        samples.append((now - started, count, cpu_seconds(args.pid)))
        if count >= args.records:
            break
        time.sleep(max(0.0, SAMPLE_SECONDS - (time.time() - now)))

    # Settle: an at-least-once copier that wrote a record twice shows it now.
    time.sleep(args.settle)
    final = end_offsets(client, partitions)
    if final != args.records:
        fail(f"the sink holds {final} records, the source {args.records} (duplicates)")

    def first_at(fraction):
        return next(s for s in samples if s[1] >= fraction * args.records)

    window = "10-90%"
    begin, end = first_at(0.1), first_at(0.9)
    if end[0] - begin[0] < 0.5:
        # Too short to measure (a tiny --smoke run): first record to last instead.
        window = "whole"
        begin, end = first_at(1 / args.records), samples[-1]
    seconds = end[0] - begin[0]
    records = end[1] - begin[1]
    result = {
        "label": args.label,
        "run": args.run,
        "records": args.records,
        "value_bytes": args.value_bytes,
        "window": window,
        "window_seconds": round(seconds, 3),
        "window_records": records,
        "first_record_seconds": round(first_at(1 / args.records)[0], 2),
        "all_copied_seconds": round(samples[-1][0], 2),
    }
    if seconds > 0 and records > 0:
        mb_per_second = records * args.value_bytes / seconds / 1e6
        millicores = (end[2] - begin[2]) / seconds * 1000
        result.update({
            "records_per_second": round(records / seconds, 1),
            "mb_per_second": round(mb_per_second, 3),
            "cpu_millicores": round(millicores, 1),
            "millicores_per_mb_per_second": round(millicores / mb_per_second, 2),
        })
    with open(args.json, "w") as out:
        json.dump(result, out)
    print(f"{args.label} (run {args.run}): all {args.records} records on the sink after "
          f"{result['all_copied_seconds']}s (first at {result['first_record_seconds']}s); "
          f"{result.get('records_per_second', '?')} records/s, {result.get('mb_per_second', '?')} MB/s, "
          f"{result.get('millicores_per_mb_per_second', '?')} mcores/MB/s over the {window} window",
          file=sys.stderr)


def delete(args):
    """Deletes a copy once measured: a default run would otherwise keep GBs of them."""
    client = admin(args.bootstrap)  # kept: the request dies with its client
    client.delete_topics([args.topic], operation_timeout=30)[args.topic].result()


def median_range(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def shown(stat, digits):
    if stat is None:
        return "n/a"
    text = f"{stat['median']:,.{digits}f}"
    if stat["min"] != stat["max"]:
        text += f" [{stat['min']:,.{digits}f}-{stat['max']:,.{digits}f}]"
    return text


def report(args):
    results = [json.load(open(path)) for path in args.results]
    order = ["mirrormaker2", "passthrough", "envelope-seal"]
    by_label = {label: [r for r in results if r["label"] == label] for label in order}
    runs = sorted({r["run"] for r in results})
    summary = {"rows": {}, "ratios": {}, "results": results}
    lines = ["| copier | records/s | MB/s | mcores | mcores/MB/s | first record s | all copied s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label in order:
        rows = by_label[label]
        row = {
            "runs": len(rows),
            "records_per_second": median_range([r.get("records_per_second") for r in rows], 0),
            "mb_per_second": median_range([r.get("mb_per_second") for r in rows], 1),
            "cpu_millicores": median_range([r.get("cpu_millicores") for r in rows], 0),
            "millicores_per_mb_per_second": median_range(
                [r.get("millicores_per_mb_per_second") for r in rows], 1),
            "first_record_seconds": median_range([r.get("first_record_seconds") for r in rows], 1),
            "all_copied_seconds": median_range([r.get("all_copied_seconds") for r in rows], 1),
        }
        summary["rows"][label] = row
        lines.append(f"| {label} | {shown(row['records_per_second'], 0)} | {shown(row['mb_per_second'], 1)} "
                     f"| {shown(row['cpu_millicores'], 0)} | {shown(row['millicores_per_mb_per_second'], 1)} "
                     f"| {shown(row['first_record_seconds'], 1)} | {shown(row['all_copied_seconds'], 1)} |")
    lines += ["", "| ratio (per run, then median [range]) | records/s | mcores/MB/s |", "|---|---:|---:|"]
    for top, bottom in [("envelope-seal", "passthrough"), ("envelope-seal", "mirrormaker2"),
                        ("passthrough", "mirrormaker2")]:
        ratios = {"records_per_second": [], "millicores_per_mb_per_second": []}
        for run in runs:
            a = next((r for r in by_label[top] if r["run"] == run), {})
            b = next((r for r in by_label[bottom] if r["run"] == run), {})
            for field, values in ratios.items():
                if a.get(field) and b.get(field):
                    values.append(a[field] / b[field])
        stats = {field: median_range(values, 2) for field, values in ratios.items()}
        summary["ratios"][f"{top} / {bottom}"] = stats
        lines.append(f"| {top} / {bottom} | {shown(stats['records_per_second'], 2)} "
                     f"| {shown(stats['millicores_per_mb_per_second'], 2)} |")
    windows = sorted({r.get("window", "?") for r in results})
    first = results[0]
    lines += ["", f"{first['records']:,} records of {first['value_bytes']:,} B, {len(runs)} run(s); "
              f"rate and CPU over the {'/'.join(windows)} window of records on the sink; "
              "mcores = copier CPU (user+system, every thread) per wall second x 1000; MB = 10^6 B of source values."
              + (f" {args.note}" if args.note else "")]
    summary["table"] = "\n".join(lines)
    with open(args.out, "w") as out:
        json.dump(summary, out, indent=2)
    print(summary["table"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--value-bytes", type=int, required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--warm", action="append", default=[], metavar="BOOTSTRAP",
                   help="another cluster whose group coordinator to start before measuring")
    w = commands.add_parser("watch")
    w.add_argument("bootstrap")
    w.add_argument("topic")
    w.add_argument("--records", type=int, required=True)
    w.add_argument("--value-bytes", type=int, required=True)
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--label", required=True)
    w.add_argument("--run", type=int, required=True)
    w.add_argument("--launched", type=float, help="when the copier started (Unix time)")
    w.add_argument("--timeout", type=float, default=600)
    w.add_argument("--first-record-timeout", type=float, default=90)
    w.add_argument("--settle", type=float, default=2)
    w.add_argument("--json", required=True)
    d = commands.add_parser("delete")
    d.add_argument("bootstrap")
    d.add_argument("topic")
    r = commands.add_parser("report")
    r.add_argument("--note", default="", help="a sentence for the table's footnote")
    r.add_argument("out")
    r.add_argument("results", nargs="+")
    args = parser.parse_args()
    {"produce": produce, "watch": watch, "delete": delete, "report": report}[args.command](args)


if __name__ == "__main__":
    main()

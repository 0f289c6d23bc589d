"""Counts the distinct record keys on a topic: count_keys.py BOOTSTRAP TOPIC [ONLY]

Reads every partition from the beginning up to the end it had when the count started
(read_topic.py), so it answers promptly while producers keep writing, on transactional
topics too; read_committed, so records of aborted or open transactions do not count.
With ONLY (a regular expression), only keys it matches count.
"""
import re
import sys

from read_topic import read_records


def main() -> None:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    only = re.compile(sys.argv[3].encode() if len(sys.argv) > 3 else b"")
    keys = {m.key() for m in read_records(bootstrap, topic, group="kafka-transit-key-count")
            if m.key() and only.search(m.key())}
    print(len(keys))


if __name__ == "__main__":
    main()

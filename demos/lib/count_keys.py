"""Counts the distinct record keys on a topic: count_keys.py BOOTSTRAP TOPIC

Reads every partition from the beginning up to the end it had when the count started
(read_topic.py), so it answers promptly while producers keep writing, on transactional
topics too; read_committed, so records of aborted or open transactions do not count.
"""
import sys

from read_topic import read_records


def main() -> None:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    keys = {m.key() for m in read_records(bootstrap, topic, group="kafka-transit-key-count") if m.key()}
    print(len(keys))


if __name__ == "__main__":
    main()

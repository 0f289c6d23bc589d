"""Prints a topic's records: read_topic.py BOOTSTRAP TOPIC [read_committed|read_uncommitted] [--headers]

One key<TAB>value line per record (UTF-8 text records; with --headers a third column,
the headers in order as JSON [[name, value or null], ...], as demos/python/producer.py
--keys-and-headers --out writes them), every partition from the
beginning up to where it ended when the read started, so it answers while producers
keep writing (kcat -e waits for a quiet moment at the end of every partition).

isolation.level is read_committed by default, as librdkafka's: only records of committed
transactions, which is how a downstream consumer of an exactly-once pipeline reads.
read_uncommitted also shows the records of aborted and still-open transactions.

A partition also counts as read at its end-of-partition event: transaction markers take
offsets of their own, so on a transactional topic the last record is not at the high
watermark - 1, and read_committed stops at the last stable offset (before a transaction
that is still open). KCAT_CONFIG: see kafka_config.py.
"""
import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from kafka_config import client_config


def read_records(bootstrap: str, topic: str, isolation: str = "read_committed",
                 group: str = "kafka-transit-topic-reader", idle: float = 10.0):
    """Yields the records up to each partition's end when called; stops early (saying so
    on stderr) when nothing arrives for `idle` seconds."""
    consumer = Consumer({**client_config(bootstrap), "group.id": group, "enable.auto.commit": False,
                         "enable.partition.eof": True, "isolation.level": isolation})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            message = consumer.poll(idle)
            if message is None:
                print(f"{topic}: partitions {sorted(ends)} not read to their end: nothing for {idle:.0f}s",
                      file=sys.stderr)
                break
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    ends.pop(message.partition(), None)
                continue
            if message.partition() not in ends:
                continue  # written after the read started
            yield message
            if message.offset() + 1 >= ends[message.partition()]:
                del ends[message.partition()]
    finally:
        consumer.close()


def main() -> None:
    with_headers = "--headers" in sys.argv
    args = [arg for arg in sys.argv[1:] if arg != "--headers"]
    bootstrap, topic = args[0], args[1]
    isolation = args[2] if len(args) > 2 else "read_committed"
    out = sys.stdout
    for message in read_records(bootstrap, topic, isolation):
        key, value = message.key() or b"", message.value() or b""
        line = f"{key.decode(errors='replace')}\t{value.decode(errors='replace')}"
        if with_headers:
            headers = [[name, None if v is None else v.decode(errors="replace")]
                       for name, v in message.headers() or []]
            line += "\t" + json.dumps(headers, separators=(",", ":"))
        out.write(line + "\n")


if __name__ == "__main__":
    main()

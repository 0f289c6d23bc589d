"""Counts the distinct record keys on a topic: count_keys.py BOOTSTRAP TOPIC

Reads every partition from the beginning up to the high watermark it had when the
count started, so it answers promptly while producers keep writing (kcat -e waits for
a quiet moment at the end of every partition).
"""
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from kafka_config import client_config


def main() -> None:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    consumer = Consumer({**client_config(bootstrap), "group.id": "kafka-transit-key-count",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    keys = set()
    while ends:
        message = consumer.poll(10)
        if message is None:
            break
        if message.error():
            continue
        if message.key():
            keys.add(message.key())
        if message.offset() + 1 >= ends.get(message.partition(), 0):
            ends.pop(message.partition(), None)
    consumer.close()
    print(len(keys))


if __name__ == "__main__":
    main()

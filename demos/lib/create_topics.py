"""Creates Kafka topics: create_topics.py BOOTSTRAP NAME[:PARTITIONS]...

Uses confluent-kafka's admin client (librdkafka), as an operator's tooling would.
Topics that already exist are left as they are. KCAT_CONFIG may name a file of
librdkafka properties (key=value lines, as kcat -F reads) for a secured cluster.
"""
import os
import sys

from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    bootstrap, specs = sys.argv[1], sys.argv[2:]
    config = {"bootstrap.servers": bootstrap}
    if os.environ.get("KCAT_CONFIG"):
        for line in open(os.environ["KCAT_CONFIG"], encoding="utf-8"):
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                config[key.strip()] = value.strip()
    admin = AdminClient(config)
    topics = []
    for spec in specs:
        name, _, partitions = spec.partition(":")
        topics.append(NewTopic(name, num_partitions=int(partitions or 1), replication_factor=1))
    for name, future in admin.create_topics(topics, operation_timeout=10).items():
        try:
            future.result()
        except Exception as error:  # noqa: BLE001 - report every kind the same way
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                sys.exit(f"creating topic {name}: {error}")


if __name__ == "__main__":
    main()

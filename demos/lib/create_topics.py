"""Creates Kafka topics: create_topics.py BOOTSTRAP NAME[:PARTITIONS[:CONFIG=VALUE,...]]...

Uses confluent-kafka's admin client (librdkafka), as an operator's tooling would.
Topics that already exist are left as they are. Topic configuration may follow the
partition count, e.g. `orders:3:cleanup.policy=compact,segment.ms=1000` (topic_config.py
changes it later). KCAT_CONFIG: see kafka_config.py.
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic

from kafka_config import client_config


def main() -> None:
    bootstrap, specs = sys.argv[1], sys.argv[2:]
    admin = AdminClient(client_config(bootstrap))
    topics = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        partitions, _, settings = rest.partition(":")
        config = dict(setting.split("=", 1) for setting in settings.split(",") if setting)
        topics.append(NewTopic(name, num_partitions=int(partitions or 1), replication_factor=1, config=config))
    for name, future in admin.create_topics(topics, operation_timeout=10).items():
        try:
            future.result()
        except Exception as error:  # noqa: BLE001 - report every kind the same way
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                sys.exit(f"creating topic {name}: {error}")


if __name__ == "__main__":
    main()

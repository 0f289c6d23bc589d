"""Changes a topic's configuration while it is in use: topic_config.py BOOTSTRAP TOPIC NAME=VALUE...

An incremental change (the other settings stay), as `kafka-configs.sh --alter
--add-config` makes it, through confluent-kafka's admin client. KCAT_CONFIG: see
kafka_config.py.
"""
import sys

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kafka_config import client_config


def main() -> None:
    bootstrap, topic, settings = sys.argv[1], sys.argv[2], sys.argv[3:]
    if not settings:
        sys.exit(__doc__)
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, _, value in (s.partition("=") for s in settings)]
    admin = AdminClient(client_config(bootstrap))
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        try:
            future.result(timeout=30)
        except Exception as error:  # noqa: BLE001 - report every kind the same way
            sys.exit(f"changing {topic}'s configuration ({', '.join(settings)}): {error}")


if __name__ == "__main__":
    main()

"""Client settings for the demos' and tests' own Kafka tooling.

KCAT_CONFIG may name a file of librdkafka properties (key=value lines, as kcat -F
reads) for a secured cluster; its settings are added to bootstrap.servers.
"""
import os


def client_config(bootstrap: str) -> dict:
    config = {"bootstrap.servers": bootstrap}
    path = os.environ.get("KCAT_CONFIG")
    if path:
        for line in open(path, encoding="utf-8"):
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                config[key.strip()] = value.strip()
    return config

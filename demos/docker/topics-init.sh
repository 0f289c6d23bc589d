#!/bin/bash
# Run once by docker-compose.yml's topics-init service (the cp-kafka image): creates the
# topics of the container walk-through. The broker does not auto-create topics, so a
# typo in a pipeline's topic name fails loudly instead of writing somewhere new.
set -euo pipefail
for topic in customers.raw customers.protected customers.cleartext \
  customers.raw.dlq customers.protected.dlq; do
  kafka-topics --bootstrap-server kafka:9092 --create --if-not-exists \
    --topic "$topic" --partitions 3 --replication-factor 1
done
kafka-topics --bootstrap-server kafka:9092 --list

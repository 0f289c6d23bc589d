# kafka-transit in a container: `docker compose up --build` (see demos/README.md) or
#   docker build -t kafka-transit .
#   docker run --rm -e VAULT_TOKEN -v $PWD/pipeline.toml:/etc/kafka-transit/pipeline.toml:ro \
#     kafka-transit run --config /etc/kafka-transit/pipeline.toml

# --- build: the host binary, with the built-in policies (guest/, compiled for
# wasm32-wasip2 by host/build.rs) embedded in it.
FROM rust:1.95-bookworm AS build
# rdkafka (features ssl + tokio) builds librdkafka with its own configure script: a C
# toolchain, pkg-config, OpenSSL and zlib headers. No cmake needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# rust-toolchain.toml names channel "stable" with the wasm targets; recent rustup no
# longer installs it implicitly, so install it (and the guest target) explicitly.
RUN rustup toolchain install && rustup target add wasm32-wasip2
COPY wit wit
# Name templates ({topic}, {header:NAME}): a workspace member, and a dependency of the
# policies' SDK.
COPY names names
# The envelope format's header parser and writer: a workspace member, and a dependency of
# the host and of the policies' SDK.
COPY envelope-format envelope-format
# The walkers of Avro, Protobuf and JSON Schema records: a workspace member, and a
# dependency of the policies' SDK.
COPY schema-fields schema-fields
COPY guest guest
COPY host host
# vault-dev is a workspace member (the host's tests and `demo` use it); the image's
# binary is built without the demo feature, so it carries no Vault server.
COPY vault-dev vault-dev
RUN cargo build --release --locked --no-default-features -p kafka-transit

# --- runtime: the binary and the shared libraries it links (OpenSSL 3, zlib).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kafka-transit \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /var/lib/kafka-transit kafka-transit
COPY --from=build /src/target/release/kafka-transit /usr/local/bin/kafka-transit
# Compiled policies are cached here (keyed by digest), so restarts skip compilation.
ENV KAFKA_TRANSIT_CACHE_DIR=/var/lib/kafka-transit/cache
USER kafka-transit
ENTRYPOINT ["kafka-transit"]
CMD ["--help"]

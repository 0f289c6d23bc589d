package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.stream.Stream;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;

/**
 * Reads what kafka-transit wrote, through live Apache Kafka and OpenBao (over TLS): run by
 * .ci/e2e/readers.sh, which sets the environment; skipped otherwise.
 */
@EnabledIfEnvironmentVariable(named = "KAFKA_TRANSIT_E2E_BOOTSTRAP", matches = ".+")
class HostOutputIT {
    private static final String[] TOPICS = {"readers.sealed", "readers.encrypted"};
    private static final int COUNT = Integer.parseInt(System.getenv("KAFKA_TRANSIT_E2E_COUNT"));
    private static final Duration DEADLINE = Duration.ofSeconds(90);

    /** The consumer properties an application writes: the point of issue 13. */
    private static Properties properties(String valueDeserializer) {
        Properties props = new Properties();
        props.put("bootstrap.servers", System.getenv("KAFKA_TRANSIT_E2E_BOOTSTRAP"));
        props.put("group.id", "java-reader-" + UUID.randomUUID());
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("isolation.level", "read_committed");
        props.put("max.partition.fetch.bytes", String.valueOf(16 << 20));
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", valueDeserializer);
        props.put("kafka.transit.vault.address", System.getenv("VAULT_ADDR"));
        props.put("kafka.transit.vault.ca.file", System.getenv("VAULT_CACERT"));
        props.put("kafka.transit.vault.token.file", System.getenv("KAFKA_TRANSIT_E2E_TOKEN_FILE"));
        props.put("kafka.transit.vault.key", "customers");
        return props;
    }

    /** key -> expected value; null for a tombstone. */
    private static Map<String, byte[]> expected() {
        Map<String, byte[]> expected = new HashMap<>();
        try (Stream<Path> files = Files.list(Path.of(System.getenv("KAFKA_TRANSIT_E2E_EXPECTED")))) {
            for (Path file : files.toList()) {
                String name = file.getFileName().toString();
                String key = name.substring(0, name.lastIndexOf('.'));
                expected.put(key, name.endsWith(".null") ? null : Files.readAllBytes(file));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        assertEquals(COUNT, expected.size());
        return expected;
    }

    private static <V> List<ConsumerRecord<String, V>> readAll(KafkaConsumer<String, V> consumer, String topic,
                                                               int count) {
        consumer.subscribe(List.of(topic));
        List<ConsumerRecord<String, V>> records = new ArrayList<>();
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        while (records.size() < count && System.nanoTime() < deadline) {
            consumer.poll(Duration.ofMillis(500)).forEach(records::add);
        }
        assertEquals(count, records.size(), topic);
        return records;
    }

    private static int compare(String topic, Map<String, byte[]> expected, Map<String, byte[]> read) {
        int identical = 0;
        for (Map.Entry<String, byte[]> entry : expected.entrySet()) {
            assertTrue(read.containsKey(entry.getKey()), topic + ": no record " + entry.getKey());
            if (entry.getValue() == null) {
                assertNull(read.get(entry.getKey()), topic + ": " + entry.getKey() + " is not a tombstone");
            } else {
                assertArrayEquals(entry.getValue(), read.get(entry.getKey()), topic + ": " + entry.getKey());
            }
            identical++;
        }
        return identical;
    }

    @Test
    void aConsumerConfiguredByPropertiesReadsTheHostsOutputByteIdentical() {
        Map<String, byte[]> expected = expected();
        for (String topic : TOPICS) {
            Map<String, byte[]> read = new HashMap<>();
            long started = System.nanoTime();
            try (KafkaConsumer<String, byte[]> consumer =
                         new KafkaConsumer<>(properties(KafkaTransitDeserializer.class.getName()))) {
                readAll(consumer, topic, COUNT).forEach(r -> read.put(r.key(), r.value()));
            }
            int identical = compare(topic, expected, read);
            System.out.printf("java reader: %s: %d records read with KafkaTransitDeserializer, %d byte-identical "
                    + "(1 MiB value %d bytes) in %d ms%n", topic, read.size(), identical, read.get("one-mib").length,
                    (System.nanoTime() - started) / 1_000_000);
        }
    }

    @Test
    void aWholePollIsReadWithOneVaultRequestPerBatch() {
        Map<String, byte[]> expected = expected();
        for (String topic : TOPICS) {
            Properties props = properties(ByteArrayDeserializer.class.getName());
            Map<String, Object> configs = new HashMap<>();
            props.forEach((k, v) -> configs.put((String) k, v));
            try (KafkaTransitDeserializer<byte[]> reader = new KafkaTransitDeserializer<>();
                 KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
                reader.configure(configs, false);
                Map<String, byte[]> read = new HashMap<>();
                int polls = 0;
                long deadline = System.nanoTime() + DEADLINE.toNanos();
                consumer.subscribe(List.of(topic));
                while (read.size() < COUNT && System.nanoTime() < deadline) {
                    var batch = consumer.poll(Duration.ofMillis(500));
                    if (!batch.isEmpty()) {
                        polls++;
                        reader.readAll(batch).forEach(r -> read.put(r.key(), r.value()));
                    }
                }
                int identical = compare(topic, expected, read);
                long calls = reader.reader().vaultCalls();
                assertTrue(calls <= polls, calls + " Vault requests for " + polls + " polls");
                System.out.printf("java reader: %s: %d records read with readAll in %d polls, %d byte-identical, "
                        + "%d Vault request(s)%n", topic, read.size(), polls, identical, calls);
            }
        }
    }

    @Test
    void aTokenVaultRefusesFailsThePollNeverYieldingCiphertext(@TempDir Path dir) throws IOException {
        Properties props = properties(KafkaTransitDeserializer.class.getName());
        props.put("kafka.transit.vault.token.file", Files.writeString(dir.resolve("token"), "not-a-token").toString());
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of("readers.sealed"));
            long deadline = System.nanoTime() + DEADLINE.toNanos();
            while (System.nanoTime() < deadline) {
                try {
                    assertTrue(consumer.poll(Duration.ofMillis(500)).isEmpty(), "records returned");
                } catch (RecordDeserializationException e) {
                    TransitReadException cause = assertInstanceOf(TransitReadException.class, e.getCause().getCause());
                    assertEquals(TransitReadException.Reason.VAULT, cause.reason());
                    assertTrue(cause.getMessage().contains("HTTP 403"), cause.getMessage());
                    assertFalse(cause.getMessage().contains("not-a-token"));
                    System.out.printf("java reader: a refused token fails the poll at %s offset %d: %s%n",
                            e.topicPartition(), e.offset(), cause.getMessage());
                    return;
                }
            }
            fail("no failure with a token Vault refuses");
        }
    }

    @Test
    void aValueEncryptedInANamespaceDecryptsWithTheNamespaceSet() throws IOException {
        String text = Files.readString(Path.of(System.getenv("KAFKA_TRANSIT_E2E_NAMESPACE_VALUE"))).strip();
        Map<String, Object> configs = new HashMap<>();
        properties(KafkaTransitDeserializer.class.getName()).forEach((k, v) -> configs.put((String) k, v));
        configs.remove("kafka.transit.vault.token.file"); // the root token, from VAULT_TOKEN
        try (TransitReader outside = TransitReader.from(TransitConfig.from(configs))) {
            assertEquals(TransitReadException.Reason.VAULT,
                    assertThrows(TransitReadException.class, () -> outside.decryptValue(text)).reason());
        }
        configs.put("kafka.transit.vault.namespace", "team-a");
        try (TransitReader inside = TransitReader.from(TransitConfig.from(configs))) {
            assertEquals("hello from namespace team-a", new String(inside.decryptValue(text), StandardCharsets.UTF_8));
        }
        System.out.println("java reader: a value encrypted in namespace team-a decrypts with the namespace set, not without");
    }

    @Test
    void aTamperedEnvelopeFailsThePollNamingPartitionAndOffset() {
        Properties props = properties(KafkaTransitDeserializer.class.getName());
        props.put("kafka.transit.inner.deserializer", StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of("readers.tampered"));
            List<ConsumerRecord<String, String>> before = new ArrayList<>();
            RecordDeserializationException error = null;
            long deadline = System.nanoTime() + DEADLINE.toNanos();
            while (error == null && System.nanoTime() < deadline) {
                try {
                    consumer.poll(Duration.ofMillis(500)).forEach(before::add);
                } catch (RecordDeserializationException e) {
                    error = e;
                }
            }
            if (error == null) {
                fail("the tampered envelope was not refused; read " + before.size() + " records");
            }
            assertEquals(1, before.size());
            assertTrue(before.get(0).value().contains("PLAINTEXT-7"));
            assertEquals("readers.tampered-0", error.topicPartition().toString());
            assertEquals(1, error.offset());
            assertTrue(error.getMessage().contains("readers.tampered-0 at offset 1"), error.getMessage());
            SerializationException cause = assertInstanceOf(SerializationException.class, error.getCause());
            assertNotNull(cause.getMessage());
            assertTrue(cause.getMessage().contains("topic readers.tampered")
                    && cause.getMessage().contains("authentication"), cause.getMessage());
            System.out.printf("java reader: tampered envelope refused: %s; cause: %s%n", error.getMessage(),
                    cause.getMessage());
        }
    }
}

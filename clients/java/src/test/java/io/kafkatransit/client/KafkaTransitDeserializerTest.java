package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class KafkaTransitDeserializerTest {
    private static final Vectors.Sealed HELLO = Vectors.sealed().get(0);

    private static KafkaTransitDeserializer<String> deserializer() {
        FakeVault vault = new FakeVault().knows(HELLO.wrappedKey(), HELLO.dataKey());
        KafkaTransitDeserializer<String> deserializer =
                new KafkaTransitDeserializer<>(new TransitReader(vault, null, 10), new StringDeserializer());
        deserializer.configure(Map.of(), false);
        return deserializer;
    }

    @Test
    void opensIntoTheInnerDeserializerAndKeepsTombstones() {
        try (KafkaTransitDeserializer<String> deserializer = deserializer()) {
            assertEquals("hello, envelope", deserializer.deserialize("customers.sealed", HELLO.envelope()));
            assertNull(deserializer.deserialize("customers.sealed", null));
        }
    }

    @Test
    void aTamperedValueIsASerializationExceptionNamingTheTopicNeverData() {
        try (KafkaTransitDeserializer<String> deserializer = deserializer()) {
            for (Vectors.Tampered t : Vectors.tampered()) {
                SerializationException error = assertThrows(SerializationException.class,
                        () -> deserializer.deserialize("customers.sealed", t.envelope()), t.name());
                assertTrue(error.getMessage().contains("topic customers.sealed"), error.getMessage());
                assertFalse(error.getMessage().contains(Vectors.HEX.formatHex(HELLO.dataKey())));
            }
        }
    }

    @Test
    void readAllOpensABatchAndNamesPartitionAndOffsetOfAFailure() {
        try (KafkaTransitDeserializer<String> deserializer = deserializer()) {
            List<ConsumerRecord<String, byte[]>> batch = List.of(
                    new ConsumerRecord<>("customers.sealed", 2, 40, "a", HELLO.envelope()),
                    new ConsumerRecord<>("customers.sealed", 2, 41, "b", (byte[]) null));
            List<ConsumerRecord<String, String>> read = deserializer.readAll(batch);
            assertEquals("hello, envelope", read.get(0).value());
            assertEquals(40, read.get(0).offset());
            assertNull(read.get(1).value());

            byte[] tampered = Vectors.tampered().get(0).envelope();
            RecordDeserializationException error = assertThrows(RecordDeserializationException.class,
                    () -> deserializer.readAll(List.of(batch.get(0),
                            new ConsumerRecord<>("customers.sealed", 2, 42, "c", tampered))));
            assertEquals(42, error.offset());
            assertEquals("customers.sealed-2", error.topicPartition().toString());
            assertTrue(error.getMessage().contains("customers.sealed-2 at offset 42"), error.getMessage());
        }
    }

    @Test
    void configuredByConsumerPropertiesAlone(@TempDir Path dir) throws IOException {
        Path token = Files.writeString(dir.resolve("token"), "s.secret-token\n");
        Map<String, Object> props = new HashMap<>(Map.of(
                TransitConfig.ADDRESS, "https://vault.example:8200/",
                TransitConfig.MOUNT, "/transit-eu/",
                TransitConfig.KEY, "customers",
                TransitConfig.TOKEN_FILE, token.toString(),
                TransitConfig.NAMESPACE, "team-a",
                TransitConfig.CACHE_SIZE, "5",
                TransitConfig.INNER_DESERIALIZER, StringDeserializer.class.getName()));
        TransitConfig config = TransitConfig.from(props);
        assertEquals("https://vault.example:8200", config.address().toString());
        assertEquals("transit-eu", config.mount());
        assertEquals(5, config.cacheSize());
        assertFalse(config.toString().contains("s.secret-token"));
        try (KafkaTransitDeserializer<Object> deserializer = new KafkaTransitDeserializer<>()) {
            deserializer.configure(props, false);
            assertFalse(deserializer.reader().toString().contains("secret-token"));
            // Vault is not there: a read fails as a SerializationException, never returns the envelope
            props.put(TransitConfig.ADDRESS, "http://127.0.0.1:1");
        }
        try (KafkaTransitDeserializer<Object> deserializer = new KafkaTransitDeserializer<>()) {
            deserializer.configure(props, false);
            SerializationException error = assertThrows(SerializationException.class,
                    () -> deserializer.deserialize("t", HELLO.envelope()));
            assertTrue(error.getMessage().contains("unreachable"), error.getMessage());
        }
        props.remove(TransitConfig.ADDRESS);
        if (System.getenv("VAULT_ADDR") == null) {
            assertThrows(ConfigException.class, () -> TransitConfig.from(props));
        }
    }

    @Test
    void defaultInnerDeserializerGivesTheBytes() {
        FakeVault vault = new FakeVault().knows(HELLO.wrappedKey(), HELLO.dataKey());
        try (KafkaTransitDeserializer<byte[]> deserializer =
                     new KafkaTransitDeserializer<>(new TransitReader(vault, null, 10), null)) {
            deserializer.configure(Map.of(), false);
            assertArrayEquals("hello, envelope".getBytes(StandardCharsets.UTF_8),
                    deserializer.deserialize("t", HELLO.envelope()));
        }
    }
}

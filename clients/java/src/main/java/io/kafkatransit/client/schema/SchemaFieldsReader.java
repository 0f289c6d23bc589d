package io.kafkatransit.client.schema;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import io.kafkatransit.client.Decryption;
import io.kafkatransit.client.Envelope;
import io.kafkatransit.client.TransitDecrypter;
import io.kafkatransit.client.TransitReadException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;

/**
 * Opens the protected fields of schema'd records that kafka-transit's
 * {@code encrypt-schema-fields} wrote (docs/schema-fields.md), without Kafka: each value in
 * Confluent's wire format is decoded under its writer schema (from the registry, by id,
 * kept), the selected fields (tagged, or at configured paths) are found, and their
 * ciphertexts are decrypted with one Vault {@code transit/decrypt} batch request per record
 * ({@link #open}) or per transit key for a whole batch of records ({@link #openAll}).
 *
 * <p>A string field's ciphertext text gives back the string; a bytes field holds the UTF-8
 * of the ciphertext text and gives back the bytes. A record that cannot be opened throws a
 * {@link SchemaFieldsException} (or is a failed {@link Outcome}); its ciphertext is never
 * returned as data, and messages never hold field values, map keys or array indices.
 */
public final class SchemaFieldsReader implements AutoCloseable {
    public static final String POLICY_HEADER = "kafka-transit.policy";
    public static final String KEY_HEADER = "kafka-transit.key";
    public static final String POLICY = "encrypt-schema-fields";
    /** Parsed schemas kept, beyond which the cache starts again. */
    public static final int DEFAULT_CACHE_SIZE = 1000;
    private static final int MAX_MESSAGE_INDEXES = 1000;

    /**
     * A record to open.
     *
     * @param key the record key (for {@code context.from=record-key}), or null
     * @param value the value in Confluent's wire format; null is a tombstone
     * @param keyHeader its {@code kafka-transit.key} header, or null
     * @param policyHeader its {@code kafka-transit.policy} header, or null
     */
    public record Input(byte[] key, byte[] value, String keyHeader, String policyHeader) {
        public static Input of(byte[] value) {
            return new Input(null, value, null, null);
        }
    }

    /** One record's result: the opened record (null for a tombstone), or why it could not be opened. */
    public record Outcome(OpenedRecord record, SchemaFieldsException error) {
        public OpenedRecord get() {
            if (error != null) {
                throw error;
            }
            return record;
        }
    }

    private final SchemaSource schemas;
    private final TransitDecrypter vault;
    private final SchemaFieldsOptions options;
    private final Selection selection;
    private final int cacheSize;
    private final Map<Integer, Object> parsed = new ConcurrentHashMap<>();
    private final AtomicLong records = new AtomicLong();
    private final AtomicLong fields = new AtomicLong();
    private final AtomicLong vaultRequests = new AtomicLong();

    public SchemaFieldsReader(SchemaSource schemas, TransitDecrypter vault, SchemaFieldsOptions options) {
        this(schemas, vault, options, DEFAULT_CACHE_SIZE);
    }

    public SchemaFieldsReader(SchemaSource schemas, TransitDecrypter vault, SchemaFieldsOptions options, int cacheSize) {
        this.schemas = schemas;
        this.vault = vault;
        this.options = options;
        this.selection = new Selection(options.tags(), options.fields());
        this.cacheSize = cacheSize;
        if (options.key() != null) {
            Envelope.checkKeyName(options.key());
        }
    }

    /** The reader consumer properties describe (see {@link SchemaFieldsConfig}). */
    public static SchemaFieldsReader from(Map<String, ?> configs) {
        return SchemaFieldsConfig.from(configs).reader();
    }

    public SchemaFieldsOptions options() {
        return options;
    }

    /** Records opened so far. */
    public long records() {
        return records.get();
    }

    /** Fields opened so far. */
    public long fields() {
        return fields.get();
    }

    /** Vault {@code transit/decrypt} calls made so far (each a batch; the client may split one past 250 items). */
    public long vaultRequests() {
        return vaultRequests.get();
    }

    /** Opens one value (no record key, no headers); null for a tombstone. */
    public OpenedRecord open(byte[] value) {
        return open(Input.of(value));
    }

    /** Opens one record: one Vault request for all its fields (none when it has none). */
    public OpenedRecord open(Input input) {
        return openAll(List.of(input)).get(0).get();
    }

    /** Opens a batch of records: one Vault request per transit key for all their fields. */
    public List<Outcome> openAll(List<Input> inputs) {
        List<Outcome> outcomes = new ArrayList<>(inputs.size());
        List<Prepared> prepared = new ArrayList<>(inputs.size());
        for (Input input : inputs) {
            Prepared p = null;
            SchemaFieldsException error = null;
            if (input.value() != null) {
                try {
                    p = prepare(input);
                } catch (SchemaFieldsException e) {
                    error = e;
                }
            }
            prepared.add(p);
            outcomes.add(new Outcome(null, error));
        }
        // One request per transit key for every field of every record.
        Map<String, List<int[]>> byKey = new LinkedHashMap<>();
        for (int r = 0; r < prepared.size(); r++) {
            Prepared p = prepared.get(r);
            if (p != null) {
                for (int f = 0; f < p.items.size(); f++) {
                    byKey.computeIfAbsent(p.keyName, k -> new ArrayList<>()).add(new int[] {r, f});
                }
            }
        }
        for (Map.Entry<String, List<int[]>> entry : byKey.entrySet()) {
            List<TransitDecrypter.Item> items = new ArrayList<>(entry.getValue().size());
            for (int[] at : entry.getValue()) {
                items.add(prepared.get(at[0]).items.get(at[1]));
            }
            List<Decryption> results;
            try {
                vaultRequests.incrementAndGet();
                results = vault.decryptItems(entry.getKey(), items);
                if (results.size() != items.size()) {
                    throw new TransitReadException(TransitReadException.Reason.VAULT,
                            "Vault answered " + results.size() + " results for " + items.size() + " ciphertexts");
                }
            } catch (TransitReadException e) {
                Reason reason = e.reason() == TransitReadException.Reason.CONFIG ? Reason.CONFIG
                        : e.reason() == TransitReadException.Reason.KEY_NAME ? Reason.KEY_NAME : Reason.VAULT;
                for (int[] at : entry.getValue()) {
                    Prepared p = prepared.get(at[0]);
                    if (p.error == null) {
                        p.error = new SchemaFieldsException(reason, "schema id " + Integer.toUnsignedString(p.schemaId)
                                + ": " + e.getMessage(), e);
                    }
                }
                continue;
            }
            for (int i = 0; i < results.size(); i++) {
                int[] at = entry.getValue().get(i);
                prepared.get(at[0]).results[at[1]] = results.get(i);
            }
        }
        for (int r = 0; r < prepared.size(); r++) {
            Prepared p = prepared.get(r);
            if (p == null) {
                continue;
            }
            try {
                outcomes.set(r, new Outcome(p.finish(), null));
                records.incrementAndGet();
                fields.addAndGet(p.items.size());
            } catch (SchemaFieldsException e) {
                outcomes.set(r, new Outcome(null, e));
            }
        }
        return outcomes;
    }

    /** One record decoded, its fields found, its Vault items made. */
    private final class Prepared {
        int schemaId;
        byte[] header;
        int[] indexes;
        ParsedSchema schema;
        Located located;
        String keyName;
        List<TransitDecrypter.Item> items = new ArrayList<>();
        Decryption[] results;
        SchemaFieldsException error;

        OpenedRecord finish() {
            if (error != null) {
                throw error;
            }
            List<byte[]> plaintexts = new ArrayList<>(items.size());
            for (int i = 0; i < items.size(); i++) {
                Located.Found found = located.fields.get(i);
                String where = "field " + found.schemaPath() + " (" + (i + 1) + " of " + items.size()
                        + ") of a record of schema id " + Integer.toUnsignedString(schemaId);
                if (results[i] instanceof Decryption.Plaintext plaintext) {
                    if (!found.bytes() && !utf8(plaintext.bytes())) {
                        throw new SchemaFieldsException(Reason.PLAINTEXT, where
                                + ": a string field decrypted to bytes that are not UTF-8");
                    }
                    plaintexts.add(plaintext.bytes());
                } else {
                    String message = results[i] instanceof Decryption.Failed failed ? failed.message() : "no answer";
                    throw new SchemaFieldsException(Reason.VAULT, where + ": Vault refused to decrypt it under transit key "
                            + keyName + ": " + message);
                }
            }
            Object value = items.isEmpty() ? located.value() : located.finish(plaintexts);
            return new OpenedRecord(schemaId, schema.type(), indexes, header, value, items.size(), schema);
        }
    }

    private Prepared prepare(Input input) {
        byte[] value = input.value();
        if (value.length < 5) {
            throw new SchemaFieldsException(Reason.FORMAT,
                    "not in Confluent's wire format: " + value.length + " bytes, shorter than 5");
        }
        if (value[0] != 0) {
            throw new SchemaFieldsException(Reason.FORMAT,
                    "not in Confluent's wire format: magic byte " + (value[0] & 0xff) + ", not 0");
        }
        if (input.policyHeader() != null && !input.policyHeader().equals(POLICY)) {
            throw new SchemaFieldsException(Reason.POLICY, "the record was written by the policy "
                    + input.policyHeader() + ", not " + POLICY);
        }
        Prepared p = new Prepared();
        p.schemaId = ByteBuffer.wrap(value, 1, 4).getInt();
        p.schema = schema(p.schemaId);
        int at = 5;
        p.indexes = new int[0];
        if (p.schema.type() == RegisteredSchema.Type.PROTOBUF) {
            long[] read = varint(value, at, p.schemaId);
            int count = (int) read[0];
            at = (int) read[1];
            if (count < 0 || count > MAX_MESSAGE_INDEXES || count > value.length - at) {
                throw new SchemaFieldsException(Reason.DECODE, "value (schema id " + Integer.toUnsignedString(p.schemaId)
                        + ") has an invalid count of protobuf message indexes");
            }
            p.indexes = new int[count];
            for (int i = 0; i < count; i++) {
                read = varint(value, at, p.schemaId);
                p.indexes[i] = (int) read[0];
                at = (int) read[1];
            }
        }
        p.header = Arrays.copyOf(value, at);
        try {
            p.located = p.schema.locate(Arrays.copyOfRange(value, at, value.length), p.indexes);
        } catch (SchemaFieldsException e) {
            throw new SchemaFieldsException(e.reason(), "value (schema id " + Integer.toUnsignedString(p.schemaId)
                    + ") " + e.getMessage(), e.getCause());
        }
        p.results = new Decryption[p.located.fields.size()];
        if (p.located.fields.isEmpty()) {
            return p;
        }
        p.keyName = keyName(input);
        byte[] fixedContext = null;
        if (options.context() != null) {
            fixedContext = options.context().getBytes(StandardCharsets.UTF_8);
        } else if (options.contextFromRecordKey()) {
            if (input.key() == null) {
                throw new SchemaFieldsException(Reason.CONFIG, "the record has no key, which is its fields' "
                        + "derivation context (context.from=record-key)");
            }
            fixedContext = input.key();
        }
        for (Located.Found found : p.located.fields) {
            String text = ascii(found.content());
            if (text == null || !text.startsWith("vault:v")) {
                throw new SchemaFieldsException(Reason.NOT_CIPHERTEXT, "field " + found.schemaPath()
                        + " of a record of schema id " + Integer.toUnsignedString(p.schemaId)
                        + " is not a Vault transit ciphertext (expected vault:v<N>:...)");
            }
            byte[] context = options.deterministic() ? found.path().getBytes(StandardCharsets.UTF_8) : fixedContext;
            p.items.add(new TransitDecrypter.Item(text, context, null));
        }
        return p;
    }

    private String keyName(Input input) {
        String configured = options.key();
        String named = input.keyHeader();
        if (configured != null) {
            if (named != null && !named.equals(configured)) {
                throw new SchemaFieldsException(Reason.KEY_MISMATCH, "the record's fields are under another transit key "
                        + "than " + configured + " (its kafka-transit.key header)");
            }
            return configured;
        }
        if (named == null) {
            throw new SchemaFieldsException(Reason.CONFIG, "no transit key: the record has no kafka-transit.key header "
                    + "and kafka.transit.vault.key is not set");
        }
        try {
            Envelope.checkKeyName(named);
        } catch (TransitReadException e) {
            throw new SchemaFieldsException(Reason.KEY_NAME, "the record's kafka-transit.key header: " + e.getMessage(), e);
        }
        return named;
    }

    private static String ascii(byte[] content) {
        for (byte b : content) {
            if (b < 0x20 || b > 0x7e) {
                return null;
            }
        }
        return new String(content, StandardCharsets.US_ASCII);
    }

    private static boolean utf8(byte[] bytes) {
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes));
            return true;
        } catch (CharacterCodingException e) {
            return false;
        }
    }

    /** A zigzag varint at {@code at}: {value, next offset}. */
    private static long[] varint(byte[] data, int at, int schemaId) {
        long raw = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (at >= data.length) {
                throw new SchemaFieldsException(Reason.DECODE, "value (schema id " + Integer.toUnsignedString(schemaId)
                        + ") ends inside its protobuf message indexes");
            }
            byte b = data[at++];
            raw |= (long) (b & 0x7f) << shift;
            if ((b & 0x80) == 0) {
                long value = (raw >>> 1) ^ -(raw & 1);
                if (value < Integer.MIN_VALUE || value > Integer.MAX_VALUE) {
                    break;
                }
                return new long[] {value, at};
            }
        }
        throw new SchemaFieldsException(Reason.DECODE, "value (schema id " + Integer.toUnsignedString(schemaId)
                + ") has an invalid protobuf message index");
    }

    /** The parsed schema of an id, kept (a failure to parse it too). */
    ParsedSchema schema(int id) {
        Object cached = parsed.get(id);
        if (cached == null) {
            RegisteredSchema registered = schemas.schema(id);
            try {
                cached = switch (registered.type()) {
                    case AVRO -> new AvroSchema(registered, selection);
                    case PROTOBUF -> new ProtobufSchema(registered, selection);
                    case JSON -> new JsonSchema(registered, selection);
                };
            } catch (SchemaFieldsException e) {
                cached = new SchemaFieldsException(e.reason(), "schema id " + Integer.toUnsignedString(id) + ": "
                        + e.getMessage(), e.getCause());
            } catch (NoClassDefFoundError e) {
                cached = new SchemaFieldsException(Reason.CONFIG, "schema id " + Integer.toUnsignedString(id) + " is "
                        + registered.type() + ", whose library is not on the classpath (" + e.getMessage()
                        + "): add org.apache.avro:avro, com.google.protobuf:protobuf-java "
                        + "(and com.squareup.wire:wire-schema-jvm) or com.fasterxml.jackson.core:jackson-databind", e);
            }
            if (parsed.size() >= cacheSize) {
                parsed.clear();
            }
            parsed.put(id, cached);
        }
        if (cached instanceof SchemaFieldsException e) {
            throw new SchemaFieldsException(e.reason(), e.getMessage(), e);
        }
        return (ParsedSchema) cached;
    }

    @Override
    public void close() {
        parsed.clear();
    }
}

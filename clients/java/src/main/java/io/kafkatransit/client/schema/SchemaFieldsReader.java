package io.kafkatransit.client.schema;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import io.kafkatransit.client.Decryption;
import io.kafkatransit.client.Envelope;
import io.kafkatransit.client.Format3;
import io.kafkatransit.client.RecordOptions;
import io.kafkatransit.client.TransitDecrypter;
import io.kafkatransit.client.TransitReadException;
import io.kafkatransit.client.TransitReader;
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
 * of the ciphertext text and gives back the bytes.
 *
 * <p>Format 3 (docs/protected-records.md): a record with the {@code kafka-transit.protection}
 * header has each field decrypted with {@code associated_data} = its binding, rebuilt from the
 * header's flags, the stream ({@link RecordOptions#stream()}, default the
 * record's topic), the record key as received and the field's located path: a field moved to
 * another place, record, key or stream is refused ({@link Reason#AUTHENTICATION}). Records
 * bound to less than {@link RecordOptions#requireBinding()} are refused;
 * {@link #sourceKey} restores an encrypted record key. A record that cannot be opened throws a
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
     * @param key the record key as received (for {@code context.from=record-key}, and the binding
     *     of format 3 records), or null
     * @param value the value in Confluent's wire format; null is a tombstone
     * @param keyHeader its {@code kafka-transit.key} header, or null
     * @param policyHeader its {@code kafka-transit.policy} header, or null
     * @param topic the topic it was read from: the stream of format 3 records unless
     *     {@link RecordOptions#stream()} is set; null if unknown
     * @param protection the values of its {@code kafka-transit.protection} headers, in order
     *     (empty: a format 2 record; a value may be null, a header without value)
     */
    public record Input(byte[] key, byte[] value, String keyHeader, String policyHeader, String topic,
                        List<byte[]> protection) {
        public Input {
            // Not List.copyOf: a valueless header is a null element, refused later as FLAGS.
            protection = protection == null ? List.of() : Collections.unmodifiableList(new ArrayList<>(protection));
        }

        /** A record without protection header (format 2) and of unknown topic. */
        public Input(byte[] key, byte[] value, String keyHeader, String policyHeader) {
            this(key, value, keyHeader, policyHeader, null, List.of());
        }

        public static Input of(byte[] value) {
            return new Input(null, value, null, null);
        }

        /**
         * A record as consumed: its topic, key as received, value, and headers (the last
         * {@code kafka-transit.key} and {@code kafka-transit.policy}, every
         * {@code kafka-transit.protection}).
         */
        public static Input of(String topic, byte[] key, byte[] value, List<Format3.Header> headers) {
            String keyHeader = null;
            String policyHeader = null;
            List<byte[]> protection = new ArrayList<>();
            for (Format3.Header h : headers) {
                String text = h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
                switch (h.name()) {
                    case KEY_HEADER -> keyHeader = text;
                    case POLICY_HEADER -> policyHeader = text;
                    case Format3.PROTECTION_HEADER -> protection.add(h.value());
                    default -> {
                    }
                }
            }
            return new Input(key, value, keyHeader, policyHeader, topic, protection);
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
    /** Format 3's record-level checks and record keys, as KafkaTransitDeserializer does them (never its values). */
    private final TransitReader format3;
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
        this.format3 = new TransitReader(vault, null, 1, options.records());
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

    /**
     * Vault {@code transit/decrypt} calls made so far (each a batch; the client may split one past
     * 250 items), record keys restored by {@link #sourceKey} included.
     */
    public long vaultRequests() {
        return vaultRequests.get() + format3.vaultCalls();
    }

    /**
     * The record key as its source had it: decrypted under
     * {@link RecordOptions#recordKeysKey()} with the stream as context
     * when the record's protection header says {@code record_keys = "encrypt"}; an HMAC'd key
     * refused ({@link Reason#HMAC_KEY}) unless {@link SchemaFieldsOptions#keepHmacKeys()}; otherwise
     * as received. Checks the protection header as {@link #openAll} does (a tombstone's key too).
     */
    public byte[] sourceKey(Input input) {
        try {
            Integer flags = format3.recordFlags(null, input.protection());
            checkHmacKey(flags, input.key());
            if (flags == null || input.key() == null || (flags & Format3.RECORD_KEYS) != Format3.KEYS_ENCRYPTED) {
                return input.key();
            }
            String stream = stream(input);
            if (stream == null) {
                throw new SchemaFieldsException(Reason.CONFIG, "the record key is encrypted with its stream as "
                        + "context: give the record's topic or set " + RecordOptions.STREAM);
            }
            List<Format3.Header> headers = input.protection().stream()
                    .map(v -> new Format3.Header(Format3.PROTECTION_HEADER, v)).toList();
            return format3.readRecord(stream, input.key(), null, headers).key();
        } catch (TransitReadException e) {
            throw translated(e, "the record key: ");
        }
    }

    /**
     * Step 4 of docs/protected-records.md "What each reader must check": an HMAC'd key cannot be
     * restored, and passing it on silently would hand consumers keys their source never had.
     */
    private void checkHmacKey(Integer flags, byte[] key) {
        if (flags != null && key != null && (flags & Format3.RECORD_KEYS) == Format3.KEYS_HMAC
                && !options.keepHmacKeys()) {
            throw new SchemaFieldsException(Reason.HMAC_KEY, "the record key is an HMAC (record_keys = \"hmac\"), "
                    + "which cannot be restored; set " + SchemaFieldsConfig.KEEP_HMAC_KEYS
                    + "=true to pass such keys on as they are");
        }
    }

    /** The stream a format 3 record is bound to: the configured one, else the topic it was read from. */
    private String stream(Input input) {
        return options.records().stream() != null ? options.records().stream() : input.topic();
    }

    /** A failure of the format 3 checks or of Vault, as this reader's exception. */
    private static SchemaFieldsException translated(TransitReadException e, String prefix) {
        Reason reason = switch (e.reason()) {
            case FLAGS -> Reason.FLAGS;
            case UNBOUND -> Reason.UNBOUND;
            case AUTHENTICATION -> Reason.AUTHENTICATION;
            case CONFIG -> Reason.CONFIG;
            case KEY_NAME -> Reason.KEY_NAME;
            default -> Reason.VAULT;
        };
        return new SchemaFieldsException(reason, prefix + e.getMessage(), e);
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
                for (int[] at : entry.getValue()) {
                    Prepared p = prepared.get(at[0]);
                    if (p.error == null) {
                        p.error = translated(e, "schema id " + Integer.toUnsignedString(p.schemaId) + ": ");
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
        /** The protection header's flags; null for a format 2 record. */
        Integer flags;
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
                    if (flags != null && message.contains("message authentication failed")) {
                        throw new SchemaFieldsException(Reason.AUTHENTICATION, where + ": Vault refused it under "
                                + "transit key " + keyName + ": it was encrypted for another place in a record, "
                                + "another record key or another stream (" + message + ")");
                    }
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
        // Step 1 of docs/protected-records.md "What each reader must check", before the registry
        // or Vault is asked anything.
        try {
            p.flags = format3.recordFlags(null, input.protection());
        } catch (TransitReadException e) {
            throw translated(e, "value (schema id " + Integer.toUnsignedString(p.schemaId) + "): ");
        }
        if (p.flags != null && (p.flags & (Format3.HEADERS | Format3.PADDED | Format3.COMPRESSION)) != 0) {
            throw new SchemaFieldsException(Reason.FLAGS, String.format("value (schema id %s): its %s header has "
                    + "flags 0x%02x, but protected fields never carry sealed headers, padding or compression",
                    Integer.toUnsignedString(p.schemaId), Format3.PROTECTION_HEADER, p.flags));
        }
        checkHmacKey(p.flags, input.key());
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
            if (p.flags != null && (p.flags & Format3.RECORD_KEYS) != 0) {
                // The key on the sink is not the source's the writer used as context.
                throw new SchemaFieldsException(Reason.CONFIG, "context.from=record-key cannot open a record whose "
                        + "key is encrypted or HMAC'd (its " + Format3.PROTECTION_HEADER + " header says so)");
            }
            fixedContext = input.key();
        }
        String stream = stream(input);
        if (p.flags != null && (p.flags & Format3.STREAM) != 0 && stream == null) {
            throw new SchemaFieldsException(Reason.CONFIG, "the record's fields are bound to its stream: give the "
                    + "record's topic or set " + RecordOptions.STREAM);
        }
        for (Located.Found found : p.located.fields) {
            String text = ascii(found.content());
            if (text == null || !text.startsWith("vault:v")) {
                throw new SchemaFieldsException(Reason.NOT_CIPHERTEXT, "field " + found.schemaPath()
                        + " of a record of schema id " + Integer.toUnsignedString(p.schemaId)
                        + " is not a Vault transit ciphertext (expected vault:v<N>:...)");
            }
            byte[] context = options.deterministic() ? found.path().getBytes(StandardCharsets.UTF_8) : fixedContext;
            // Format 3: bound to the record as received and to where the field is in it.
            byte[] binding = p.flags == null ? null : Format3.binding(p.flags, stream, input.key(), found.path());
            p.items.add(new TransitDecrypter.Item(text, context, binding));
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

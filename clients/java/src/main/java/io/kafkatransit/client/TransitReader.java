package io.kafkatransit.client;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Reads values that kafka-transit protected: envelopes ({@code envelope-seal}) and Vault
 * ciphertext texts ({@code encrypt-value}, {@code vault:vN:base64}). Envelope data keys are
 * unwrapped once and kept in a bounded LRU for at most a max age; {@link #readAll} asks Vault
 * once per transit key for a whole batch. With subject keys (records sealed per data subject,
 * docs/forgetting.md) each envelope is opened under its subject's key, and a record whose
 * subject was forgotten fails with {@link Reason#SUBJECT_FORGOTTEN}. Thread-safe.
 */
public final class TransitReader implements AutoCloseable {
    public static final int DEFAULT_CACHE_SIZE = 1000;
    private static final byte[] VAULT_PREFIX = "vault:v".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] NO_AAD = new byte[0];

    private final TransitDecrypter vault;
    private final String key;
    private final String subjectKeys;
    private final DataKeyCache cache;
    private final AtomicLong vaultCalls = new AtomicLong();
    private final RecordOptions options;

    /** The outcome of reading one value. */
    public sealed interface Outcome {
        record Read(byte[] plaintext) implements Outcome {
            @Override
            public String toString() {
                return "Read[" + plaintext.length + " bytes]";
            }
        }

        record Failed(TransitReadException error) implements Outcome {
        }

        /** The plaintext, or the failure thrown. */
        default byte[] plaintext() {
            if (this instanceof Failed failed) {
                throw failed.error;
            }
            return ((Read) this).plaintext;
        }
    }

    /**
     * @param vault decrypts with Vault (usually {@link VaultTransit})
     * @param key the transit key of {@code vault:v} values; when set, envelopes must name it
     *     too (null: envelopes under any key, no {@code vault:v} values)
     * @param cacheSize how many unwrapped data keys to keep
     */
    public TransitReader(TransitDecrypter vault, String key, int cacheSize) {
        this(vault, key, cacheSize, RecordOptions.DEFAULT);
    }

    /** A reader of format 3 records too, as {@code options} say (stream, required binding, record keys). */
    public TransitReader(TransitDecrypter vault, String key, int cacheSize, RecordOptions options) {
        this(vault, key, null, cacheSize, DataKeyCache.DEFAULT_MAX_AGE, options);
    }

    /**
     * A reader of every setting.
     *
     * @param key as above; null with {@code subjectKeys}
     * @param subjectKeys the prefix of data subjects' transit key names
     *     ({@value TransitConfig#SUBJECT_KEYS}): envelopes are opened under the key they name
     *     when it has the prefix, and refused ({@link Reason#KEY_MISMATCH}) otherwise; null: off
     * @param cacheMaxAge how long an unwrapped data key stays cached ({@value TransitConfig#CACHE_MAX_AGE_MS})
     * @throws org.apache.kafka.common.config.ConfigException for a prefix that cannot start a
     *     transit key name, or one given with {@code key}
     */
    public TransitReader(TransitDecrypter vault, String key, String subjectKeys, int cacheSize, Duration cacheMaxAge,
                         RecordOptions options) {
        this(vault, key, subjectKeys, cacheSize, cacheMaxAge, options, System::nanoTime);
    }

    /** With the cache's clock given (tests: age data keys without waiting). */
    TransitReader(TransitDecrypter vault, String key, String subjectKeys, int cacheSize, Duration cacheMaxAge,
                  RecordOptions options, LongSupplier nanos) {
        this.vault = Objects.requireNonNull(vault, "vault");
        this.key = key == null || key.isEmpty() ? null : key;
        this.subjectKeys = subjectKeys == null || subjectKeys.isEmpty() ? null : subjectKeys;
        if (this.subjectKeys != null) {
            TransitConfig.checkSubjectKeys(this.subjectKeys, this.key);
        }
        this.cache = new DataKeyCache(cacheSize, cacheMaxAge, nanos);
        this.options = Objects.requireNonNull(options, "options");
    }

    /** A reader against Vault as {@code config} says. */
    public static TransitReader from(TransitConfig config) {
        return from(config, RecordOptions.DEFAULT);
    }

    /** A reader against Vault as {@code config} says, reading format 3 as {@code options} say. */
    public static TransitReader from(TransitConfig config, RecordOptions options) {
        return new TransitReader(VaultTransit.from(config), config.key(), config.subjectKeys(), config.cacheSize(),
                config.cacheMaxAge(), options);
    }

    /** This reader's format 3 options. */
    public RecordOptions options() {
        return options;
    }

    /**
     * A record read back: its key (restored when it was encrypted), value, and headers (the
     * ones in clear but the protection header, then the sealed ones, which are also in {@code sealed}).
     */
    public record Read(byte[] key, byte[] value, List<Format3.Header> headers, List<Format3.Header> sealed) {
    }

    /**
     * Reads a whole record of any format (docs/protected-records.md, "What each reader must
     * check"): the protection header, the envelope's flags against it, the binding to the
     * stream ({@link RecordOptions#stream()}, default {@code topic}) and to {@code key} (the
     * record key as received, null for a null key), the commitment, the tag, padding and
     * bounded decompression, the sealed headers (restored after the ones kept in clear) and
     * the record key (decrypted with the stream as context when it was encrypted).
     */
    public Read readRecord(String topic, byte[] key, byte[] value, List<Format3.Header> headers) {
        String stream = options.stream() != null ? options.stream() : topic;
        List<byte[]> protection = new ArrayList<>();
        List<Format3.Header> out = new ArrayList<>();
        for (Format3.Header h : headers) {
            if (h.name().equals(Format3.PROTECTION_HEADER)) {
                protection.add(h.value());
            } else {
                out.add(h);
            }
        }
        Integer flags = recordFlags(value, protection);
        byte[] plaintext = null;
        List<Format3.Header> sealed = List.of();
        if (value != null && flags == null) {
            plaintext = read(value);
        } else if (value != null) {
            Format3.Unframed opened = readBound(value, flags, stream, key);
            plaintext = opened.value();
            sealed = opened.headers();
            out.addAll(sealed);
        }
        byte[] restored = key;
        if (flags != null && key != null && (flags & Format3.RECORD_KEYS) == Format3.KEYS_ENCRYPTED) {
            if (options.recordKeysKey() == null) {
                throw new TransitReadException(Reason.CONFIG, "the record key is encrypted: set "
                        + RecordOptions.RECORD_KEYS_KEY + " to its transit key");
            }
            restored = decryptBound(options.recordKeysKey(), "record key", new TransitDecrypter.Item(
                    new String(key, StandardCharsets.US_ASCII), stream.getBytes(StandardCharsets.UTF_8), null));
        }
        return new Read(restored, plaintext, out, sealed);
    }

    /**
     * The record's flags, or null for formats 1 and 2; steps 1 and 2 of the reader's checks:
     * {@code protection} holds the values of the record's {@code kafka-transit.protection}
     * headers (more than one is refused), {@code value} is checked for a stripped envelope
     * header (null: no value to check). Public for the schema'd-record reader, whose values are
     * no envelopes and which checks the bits its fields cannot have itself.
     *
     * @throws TransitReadException FLAGS for a malformed, repeated or unknown header, UNBOUND
     *     for a record bound to less than {@link RecordOptions#requireBinding()}
     */
    public Integer recordFlags(byte[] value, List<byte[]> protection) {
        if (protection.isEmpty()) {
            if (!options.requireBinding().isEmpty()) {
                throw new TransitReadException(Reason.UNBOUND, "the record has no " + Format3.PROTECTION_HEADER
                        + " header (formats 1 and 2 are unbound) and this reader requires binding to "
                        + String.join(" and ", new java.util.TreeSet<>(options.requireBinding())));
            }
            if (value != null && value.length > 0 && value[0] == Envelope.FORMAT_VERSION_3) {
                throw new TransitReadException(Reason.FLAGS, "a version 3 envelope without its "
                        + Format3.PROTECTION_HEADER + " header (stripped?)");
            }
            return null;
        }
        if (protection.size() > 1) {
            throw new TransitReadException(Reason.FLAGS, "the record carries " + protection.size() + " "
                    + Format3.PROTECTION_HEADER + " headers");
        }
        int flags = Format3.parseProtectionHeader(protection.get(0));
        for (String what : new java.util.TreeSet<>(options.requireBinding())) {
            int bit = what.equals("stream") ? Format3.STREAM : Format3.KEY;
            if ((flags & bit) == 0) {
                throw new TransitReadException(Reason.UNBOUND, "the record is not bound to its " + what
                        + ", which this reader requires");
            }
        }
        return flags;
    }

    private Format3.Unframed readBound(byte[] value, int flags, String stream, byte[] recordKey) {
        byte[] opened;
        if (startsWith(value, VAULT_PREFIX)) {
            if ((flags & (Format3.COMPRESSION | Format3.PADDED)) != 0) {
                throw new TransitReadException(Reason.FLAGS, "a vault: value never carries compression or padding flags");
            }
            checkNotPerSubject();
            if (key == null) {
                throw new TransitReadException(Reason.CONFIG,
                        "a vault:v value needs the transit key to decrypt it with (" + TransitConfig.KEY + ")");
            }
            opened = decryptBound(key, "value", new TransitDecrypter.Item(new String(value, StandardCharsets.US_ASCII),
                    null, Format3.binding(flags, stream, recordKey, null)));
        } else {
            if (value.length == 0 || value[0] != Envelope.FORMAT_VERSION_3) {
                throw new TransitReadException(Reason.FLAGS, "the " + Format3.PROTECTION_HEADER
                        + " header announces format 3 but the value is no version 3 envelope");
            }
            if (value.length < 2) {
                throw new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: truncated in the flags");
            }
            if ((value[1] & 0xff) != flags) {
                Format3.checkFlags(value[1] & 0xff, "the envelope");
                throw new TransitReadException(Reason.FLAGS, String.format("the envelope's flags 0x%02x differ from "
                        + "its %s header's 0x%02x", value[1] & 0xff, Format3.PROTECTION_HEADER, flags));
            }
            Envelope envelope = Envelope.parse(value);
            checkKey(envelope.keyName());
            try (Lookup lookup = lookup(Map.of(envelope.keyName(), List.of(envelope.wrappedKey())), Map.of())) {
                opened = envelope.open(lookup.dataKey(envelope), Format3.bindingParts(flags, stream, recordKey, null),
                        options.maxPlaintext());
            }
        }
        return (flags & Format3.HEADERS) != 0 ? Format3.unframe(opened) : new Format3.Unframed(List.of(), opened);
    }

    private byte[] decryptBound(String keyName, String what, TransitDecrypter.Item item) {
        vaultCalls.incrementAndGet();
        List<Decryption> results = vault.decryptItems(keyName, List.of(item));
        if (results.size() != 1) {
            throw new TransitReadException(Reason.VAULT, "Vault answered " + results.size() + " results for 1 ciphertext");
        }
        if (results.get(0) instanceof Decryption.Plaintext plain) {
            return plain.bytes();
        }
        String message = ((Decryption.Failed) results.get(0)).message();
        if (message.contains("message authentication failed")) {
            throw new TransitReadException(Reason.AUTHENTICATION, "Vault refused the " + what + ": it was encrypted for "
                    + "another stream, key or place (" + message + ")");
        }
        throw new TransitReadException(Reason.VAULT, "Vault could not decrypt the " + what + " with key \"" + keyName
                + "\": " + message);
    }

    /**
     * A JSON document whose {@code vault:} string fields {@code encrypt-fields} wrote, with each
     * field decrypted; format 3 fields are bound to their JSON Pointer too, so a field moved to
     * another place (or record) is refused. Numbers keep their text; members keep their order.
     */
    public byte[] readFields(String topic, byte[] key, byte[] document, List<Format3.Header> headers) {
        List<byte[]> protection = headers.stream().filter(h -> h.name().equals(Format3.PROTECTION_HEADER))
                .map(Format3.Header::value).toList();
        Integer flags = recordFlags(new byte[] {'{'}, protection);
        if (flags != null && (flags & (Format3.COMPRESSION | Format3.PADDED | Format3.HEADERS)) != 0) {
            throw new TransitReadException(Reason.FLAGS,
                    "encrypted fields never carry compression, padding or sealed headers");
        }
        if (this.key == null) {
            throw new TransitReadException(Reason.CONFIG, "fields need the transit key (" + TransitConfig.KEY + ")");
        }
        String stream = options.stream() != null ? options.stream() : topic;
        Object parsed;
        try {
            parsed = Json.parse(new String(document, StandardCharsets.UTF_8));
        } catch (IllegalArgumentException e) {
            throw new TransitReadException(Reason.FORMAT, "not a JSON document");
        }
        return Json.write(walk(parsed, "", flags, stream, key)).getBytes(StandardCharsets.UTF_8);
    }

    private Object walk(Object node, String pointer, Integer flags, String stream, byte[] recordKey) {
        if (node instanceof Map<?, ?> map) {
            Map<String, Object> out = new LinkedHashMap<>();
            map.forEach((k, v) -> out.put((String) k, walk(v, pointer + "/"
                    + ((String) k).replace("~", "~0").replace("/", "~1"), flags, stream, recordKey)));
            return out;
        }
        if (node instanceof List<?> list) {
            List<Object> out = new ArrayList<>();
            for (int i = 0; i < list.size(); i++) {
                out.add(walk(list.get(i), pointer + "/" + i, flags, stream, recordKey));
            }
            return out;
        }
        if (node instanceof String text && text.startsWith("vault:v")) {
            byte[] plain = decryptBound(key, "field " + pointer, new TransitDecrypter.Item(text, null,
                    flags == null ? null : Format3.binding(flags, stream, recordKey, pointer)));
            try {
                return Json.parse(new String(plain, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                throw new TransitReadException(Reason.FORMAT, "the field " + pointer + " does not decrypt to JSON");
            }
        }
        return node;
    }

    /** Reads one protected value, whichever of the two forms it is. */
    public byte[] read(byte[] value) {
        return readAll(List.of(value)).get(0).plaintext();
    }

    /** Opens an envelope whose caller associated data is {@code aad} (empty for the built-in policies). */
    public byte[] open(byte[] envelope, byte[] aad) {
        Envelope parsed = Envelope.parse(envelope);
        checkKey(parsed.keyName());
        try (Lookup lookup = lookup(Map.of(parsed.keyName(), List.of(parsed.wrappedKey())), Map.of())) {
            return lookup.open(parsed, aad);
        }
    }

    /** Decrypts one {@code vault:vN:} text with the configured key. */
    public byte[] decryptValue(String text) {
        return read(text.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Reads a batch: every data key that is not cached and every {@code vault:v} value goes
     * to Vault in one {@code transit/decrypt} batch per transit key. One outcome per value, in order.
     */
    public List<Outcome> readAll(List<byte[]> values) {
        List<Item> items = new ArrayList<>(values.size());
        Map<String, List<String>> wrapped = new LinkedHashMap<>();
        Map<String, List<String>> texts = new LinkedHashMap<>();
        for (byte[] value : values) {
            Item item = classify(value);
            items.add(item);
            if (item instanceof Sealed sealed) {
                wrapped.computeIfAbsent(sealed.envelope.keyName(), k -> new ArrayList<>())
                        .add(sealed.envelope.wrappedKey());
            } else if (item instanceof Text text) {
                texts.computeIfAbsent(key, k -> new ArrayList<>()).add(text.text);
            }
        }
        try (Lookup lookup = lookup(wrapped, texts)) {
            List<Outcome> outcomes = new ArrayList<>(items.size());
            for (Item item : items) {
                try {
                    if (item instanceof Unreadable unreadable) {
                        throw unreadable.error;
                    }
                    outcomes.add(new Outcome.Read(item instanceof Sealed sealed
                            ? lookup.open(sealed.envelope, NO_AAD) : lookup.texts.get(((Text) item).text).plaintext()));
                } catch (TransitReadException e) {
                    outcomes.add(new Outcome.Failed(e));
                }
            }
            return outcomes;
        }
    }

    /** A value of a batch, classified before Vault is asked. */
    private sealed interface Item {
    }

    private record Sealed(Envelope envelope) implements Item {
    }

    private record Text(String text) implements Item {
    }

    private record Unreadable(TransitReadException error) implements Item {
    }

    private Item classify(byte[] value) {
        try {
            if (startsWith(value, VAULT_PREFIX)) {
                checkNotPerSubject();
                if (key == null) {
                    throw new TransitReadException(Reason.CONFIG,
                            "a vault:v value needs the transit key to decrypt it with (" + TransitConfig.KEY + ")");
                }
                return new Text(new String(value, StandardCharsets.US_ASCII));
            }
            if (value.length > 0 && !Envelope.looksLikeEnvelope(value)) {
                throw new TransitReadException(Reason.FORMAT, String.format(
                        "neither a kafka-transit envelope nor a Vault ciphertext (first byte 0x%02x)", value[0] & 0xff));
            }
            Envelope envelope = Envelope.parse(value);
            checkKey(envelope.keyName());
            if ((envelope.flags() & ~(Format3.COMPRESSION | Format3.PADDED)) != 0) {
                // Its binding or sealed headers need the record's topic, key and headers.
                throw new TransitReadException(Reason.FLAGS, "a format 3 record bound to its stream or key, or with "
                        + "sealed headers: read it with readRecord (KafkaTransitDeserializer does, with headers)");
            }
            return new Sealed(envelope);
        } catch (TransitReadException e) {
            return new Unreadable(e);
        }
    }

    private void checkKey(String keyName) {
        if (subjectKeys != null && !keyName.startsWith(subjectKeys)) {
            // Opened under no other key: a reader of subjects' records opens nothing that
            // forget could not make unreadable. The name is not quoted (record data).
            throw notPerSubject("the envelope was not sealed under a data subject's key");
        }
        if (key != null && !key.equals(keyName)) {
            // Not quoted: the envelope's key name is record data, and messages end up in logs.
            throw new TransitReadException(Reason.KEY_MISMATCH,
                    "envelope was sealed with another Vault key than this reader's: it opens \"" + key + "\"");
        }
    }

    /** A {@code vault:} value is sealed under one shared key: never a data subject's. */
    private void checkNotPerSubject() {
        if (subjectKeys != null) {
            throw notPerSubject("a vault:v value is not sealed per data subject (only envelopes are)");
        }
    }

    private TransitReadException notPerSubject(String what) {
        return new TransitReadException(Reason.KEY_MISMATCH, what + " (" + TransitConfig.SUBJECT_KEYS + " = \""
                + subjectKeys + "\")");
    }

    /** Whether {@code keyName} is a data subject's key, whose absence in Vault means it was forgotten. */
    private boolean subjectKey(String keyName) {
        return subjectKeys != null && keyName.startsWith(subjectKeys);
    }

    private static TransitReadException forgotten() {
        return new TransitReadException(Reason.SUBJECT_FORGOTTEN, TransitReadException.FORGOTTEN
                + ": the transit key of this record's data subject no longer exists (kafka-transit forget deleted it);"
                + " the record cannot be opened by anyone");
    }

    private static boolean startsWith(byte[] value, byte[] prefix) {
        return value.length >= prefix.length && Arrays.equals(value, 0, prefix.length, prefix, 0, prefix.length);
    }

    /**
     * What one round of Vault requests gave: data keys (copies, wiped on close), the
     * unwrap failures, and the decrypted {@code vault:v} texts.
     */
    private record Lookup(Map<DataKeyCache.Slot, byte[]> keys, Map<DataKeyCache.Slot, TransitReadException> keyErrors,
                          Map<String, Outcome> texts) implements AutoCloseable {
        byte[] open(Envelope envelope, byte[] aad) {
            return envelope.open(dataKey(envelope), aad);
        }

        byte[] dataKey(Envelope envelope) {
            DataKeyCache.Slot slot = new DataKeyCache.Slot(envelope.keyName(), envelope.wrappedKey());
            TransitReadException error = keyErrors.get(slot);
            if (error != null) {
                throw error;
            }
            return keys.get(slot);
        }

        @Override
        public void close() {
            keys.values().forEach(k -> Arrays.fill(k, (byte) 0));
        }
    }

    private Lookup lookup(Map<String, List<String>> wrapped, Map<String, List<String>> texts) {
        Lookup lookup = new Lookup(new HashMap<>(), new HashMap<>(), new HashMap<>());
        LinkedHashSet<String> keyNames = new LinkedHashSet<>(wrapped.keySet());
        keyNames.addAll(texts.keySet());
        for (String keyName : keyNames) {
            List<String> missing = new ArrayList<>();
            for (String w : new LinkedHashSet<>(wrapped.getOrDefault(keyName, List.of()))) {
                DataKeyCache.Slot slot = new DataKeyCache.Slot(keyName, w);
                byte[] cached = cache.get(slot);
                if (cached != null) {
                    lookup.keys.put(slot, cached);
                } else {
                    missing.add(w);
                }
            }
            List<String> valueTexts = new ArrayList<>(new LinkedHashSet<>(texts.getOrDefault(keyName, List.of())));
            List<String> ask = new ArrayList<>(missing);
            ask.addAll(valueTexts);
            if (ask.isEmpty()) {
                continue;
            }
            List<Decryption> results;
            try {
                vaultCalls.incrementAndGet();
                results = vault.decrypt(keyName, ask);
                if (results.size() != ask.size()) {
                    throw new TransitReadException(Reason.VAULT, "Vault answered " + results.size()
                            + " results for " + ask.size() + " ciphertexts");
                }
            } catch (TransitReadException e) {
                missing.forEach(w -> lookup.keyErrors.put(new DataKeyCache.Slot(keyName, w), e));
                valueTexts.forEach(t -> lookup.texts.put(t, new Outcome.Failed(e)));
                continue;
            }
            boolean forgotten = false;
            for (int i = 0; i < missing.size(); i++) {
                DataKeyCache.Slot slot = new DataKeyCache.Slot(keyName, missing.get(i));
                Decryption result = results.get(i);
                if (result instanceof Decryption.Plaintext plain && plain.bytes().length == 32) {
                    lookup.keys.put(slot, plain.bytes().clone());
                    cache.put(slot, plain.bytes());
                } else if (result instanceof Decryption.Plaintext plain) {
                    Arrays.fill(plain.bytes(), (byte) 0);
                    lookup.keyErrors.put(slot, unwrapFailed("not a 256-bit data key"));
                } else if (result instanceof Decryption.Failed failed && failed.keyNotFound() && subjectKey(keyName)) {
                    lookup.keyErrors.put(slot, forgotten());
                    forgotten = true;
                } else {
                    lookup.keyErrors.put(slot, unwrapFailed(((Decryption.Failed) result).message()));
                }
            }
            if (forgotten) {
                // The subject's other data keys, unwrapped before the forget, must not open
                // its records until they age out: the key is gone, so is every record under it.
                cache.dropKeyName(keyName);
                lookup.keys.entrySet().removeIf(e -> {
                    if (e.getKey().keyName().equals(keyName)) {
                        Arrays.fill(e.getValue(), (byte) 0);
                        lookup.keyErrors.put(e.getKey(), forgotten());
                        return true;
                    }
                    return false;
                });
            }
            for (int i = 0; i < valueTexts.size(); i++) {
                Decryption result = results.get(missing.size() + i);
                lookup.texts.put(valueTexts.get(i), result instanceof Decryption.Plaintext plain
                        ? new Outcome.Read(plain.bytes())
                        : new Outcome.Failed(new TransitReadException(Reason.VAULT, "Vault could not decrypt the value"
                                + " with key \"" + keyName + "\": " + ((Decryption.Failed) result).message())));
            }
        }
        return lookup;
    }

    private static TransitReadException unwrapFailed(String why) {
        return new TransitReadException(Reason.VAULT, "the envelope's data key could not be unwrapped by Vault: " + why);
    }

    /** How many times this reader asked Vault (one per transit key per batch), for tests and metrics. */
    public long vaultCalls() {
        return vaultCalls.get();
    }

    /** How many unwrapped data keys are cached now. */
    public int cachedKeys() {
        return cache.size();
    }

    /** Wipes the cached data keys. */
    @Override
    public void close() {
        cache.clear();
    }
}

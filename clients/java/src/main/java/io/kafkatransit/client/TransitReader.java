package io.kafkatransit.client;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Reads values that kafka-transit protected: envelopes ({@code envelope-seal}) and Vault
 * ciphertext texts ({@code encrypt-value}, {@code vault:vN:base64}). Envelope data keys are
 * unwrapped once and kept in a bounded LRU; {@link #readAll} asks Vault once per transit
 * key for a whole batch. Thread-safe.
 */
public final class TransitReader implements AutoCloseable {
    public static final int DEFAULT_CACHE_SIZE = 1000;
    private static final byte[] VAULT_PREFIX = "vault:v".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] NO_AAD = new byte[0];

    private final TransitDecrypter vault;
    private final String key;
    private final DataKeyCache cache;
    private final AtomicLong vaultCalls = new AtomicLong();

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
        this.vault = Objects.requireNonNull(vault, "vault");
        this.key = key == null || key.isEmpty() ? null : key;
        this.cache = new DataKeyCache(cacheSize);
    }

    /** A reader against Vault as {@code config} says. */
    public static TransitReader from(TransitConfig config) {
        return new TransitReader(VaultTransit.from(config), config.key(), config.cacheSize());
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
            return new Sealed(envelope);
        } catch (TransitReadException e) {
            return new Unreadable(e);
        }
    }

    private void checkKey(String keyName) {
        if (key != null && !key.equals(keyName)) {
            // Not quoted: the envelope's key name is record data, and messages end up in logs.
            throw new TransitReadException(Reason.KEY_MISMATCH,
                    "envelope was sealed with another Vault key than this reader's: it opens \"" + key + "\"");
        }
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
            DataKeyCache.Slot slot = new DataKeyCache.Slot(envelope.keyName(), envelope.wrappedKey());
            TransitReadException error = keyErrors.get(slot);
            if (error != null) {
                throw error;
            }
            return envelope.open(keys.get(slot), aad);
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
            for (int i = 0; i < missing.size(); i++) {
                DataKeyCache.Slot slot = new DataKeyCache.Slot(keyName, missing.get(i));
                Decryption result = results.get(i);
                if (result instanceof Decryption.Plaintext plain && plain.bytes().length == 32) {
                    lookup.keys.put(slot, plain.bytes().clone());
                    cache.put(slot, plain.bytes());
                } else if (result instanceof Decryption.Plaintext plain) {
                    Arrays.fill(plain.bytes(), (byte) 0);
                    lookup.keyErrors.put(slot, unwrapFailed("not a 256-bit data key"));
                } else {
                    lookup.keyErrors.put(slot, unwrapFailed(((Decryption.Failed) result).message()));
                }
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

package io.kafkatransit.client;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Seals records in-process as the host's {@code envelope-seal} does with format 3 options,
 * for producers on a Kafka with no kafka-transit runner in front: data keys from Vault's
 * {@code datakey/plaintext} (one per {@code maxRecords} records or {@code maxAge}, the old one
 * wiped when retired), AES-256-GCM with a random nonce per record, the key commitment,
 * compression and padding, binding, sealed headers, record keys through Vault, and the
 * protection header. Thread-safe. Every reader (host, Java, Go, Python) opens what it writes.
 */
public final class TransitWriter implements AutoCloseable {
    private static final SecureRandom RANDOM = new SecureRandom();

    private final TransitEncrypter vault;
    private final WriterOptions options;
    private final int flags;
    private SealingKey active;
    private int minted;

    private static final class SealingKey {
        final byte[] material;
        final String wrapped;
        final byte[] commitment;
        final long created = System.nanoTime();
        long sealed;

        SealingKey(byte[] material, String wrapped) {
            this.material = material;
            this.wrapped = wrapped;
            this.commitment = Format3.commitment(material);
        }
    }

    /** A record as written to the sink: key, value and headers (the protection header included). */
    public record Sealed(byte[] key, byte[] value, List<Format3.Header> headers) {
    }

    public TransitWriter(TransitEncrypter vault, WriterOptions options) {
        this.vault = Objects.requireNonNull(vault, "vault");
        this.options = Objects.requireNonNull(options, "options");
        this.flags = options.flags();
    }

    public int flags() {
        return flags;
    }

    public WriterOptions options() {
        return options;
    }

    /** How many data keys this writer asked Vault for. */
    public synchronized int dataKeysMinted() {
        return minted;
    }

    /** The stream records for {@code topic} are bound to. */
    public String streamFor(String topic) {
        String stream = options.stream() != null ? options.stream() : topic;
        try {
            Envelope.checkKeyName(stream);
        } catch (TransitReadException e) {
            throw new TransitReadException(Reason.CONFIG, "the topic is no stream name: set " + RecordOptions.STREAM);
        }
        return stream;
    }

    /**
     * The record key as it goes to the sink: kept, Vault's convergent encryption with the
     * stream as context, or Vault's HMAC of {@code stream ‖ 0x00 ‖ key}. Null stays null.
     */
    public byte[] protectKey(String topic, byte[] key) {
        if (key == null || (flags & Format3.RECORD_KEYS) == 0) {
            return key;
        }
        byte[] stream = streamFor(topic).getBytes(StandardCharsets.UTF_8);
        String text = (flags & Format3.RECORD_KEYS) == Format3.KEYS_ENCRYPTED
                ? vault.encrypt(options.recordKeysKey(), key, stream, null)
                : vault.hmac(options.recordKeysKey(), ByteBuffer.allocate(stream.length + 1 + key.length).put(stream)
                        .put((byte) 0).put(key).array());
        return text.getBytes(StandardCharsets.US_ASCII);
    }

    /** Which of {@code headers} stay in clear (the rest are sealed when sealing is on). */
    public boolean keepsInClear(String name) {
        return !options.sealHeaders() || name.startsWith("kafka-transit.") || options.keepHeaders().contains(name);
    }

    /** Seals one record for sink topic {@code topic}; {@code key} is the source record key. */
    public Sealed seal(String topic, byte[] key, byte[] value, List<Format3.Header> headers) {
        byte[] sinkKey = protectKey(topic, key);
        return new Sealed(sinkKey, value == null ? null : sealValue(topic, sinkKey, value, headers),
                keptHeaders(headers));
    }

    /** The headers left on the sink record: the ones kept in clear and the protection header. */
    public List<Format3.Header> keptHeaders(List<Format3.Header> headers) {
        List<Format3.Header> kept = new ArrayList<>();
        for (Format3.Header h : headers) {
            if (!h.name().equals(Format3.PROTECTION_HEADER) && keepsInClear(h.name())) {
                kept.add(h);
            }
        }
        kept.add(new Format3.Header(Format3.PROTECTION_HEADER, Format3.headerValue(flags)));
        return kept;
    }

    /** The envelope of {@code value}, bound to the stream and to {@code sinkKey} (the key as on the sink). */
    public byte[] sealValue(String topic, byte[] sinkKey, byte[] value, List<Format3.Header> headers) {
        String stream = streamFor(topic);
        byte[] plaintext = value;
        if (options.sealHeaders()) {
            List<Format3.Header> sealed = headers.stream().filter(h -> !h.name().equals(Format3.PROTECTION_HEADER)
                    && !keepsInClear(h.name())).toList();
            plaintext = Format3.frame(sealed, value);
        }
        byte[] body = Format3.encodeBody(plaintext, flags, options.padTo());
        byte[] nonce = new byte[Envelope.NONCE_LENGTH];
        RANDOM.nextBytes(nonce);
        Lease lease = sealingKey();
        try {
            return sealV3(lease.material, lease.commitment, options.key(), lease.wrapped, nonce, flags, body,
                    Format3.bindingParts(flags, stream, sinkKey, null));
        } finally {
            Arrays.fill(lease.material, (byte) 0);
        }
    }

    /** A copy of the sealing key for one record, wiped after it: a rotation may wipe the original meanwhile. */
    private record Lease(byte[] material, byte[] commitment, String wrapped) {
    }

    private synchronized Lease sealingKey() {
        SealingKey key = active;
        if (key != null && key.sealed < options.maxRecords()
                && Duration.ofNanos(System.nanoTime() - key.created).compareTo(options.maxAge()) < 0) {
            key.sealed++;
            return new Lease(key.material.clone(), key.commitment, key.wrapped);
        }
        TransitEncrypter.DataKey fresh = vault.dataKey(options.key());
        if (fresh.plaintext().length != 32 || !fresh.wrapped().startsWith("vault:v")
                || fresh.wrapped().length() > 0xffff) {
            Arrays.fill(fresh.plaintext(), (byte) 0);
            throw new TransitReadException(Reason.VAULT, "Vault's data key cannot be put in an envelope");
        }
        if (active != null) {
            Arrays.fill(active.material, (byte) 0);
        }
        active = new SealingKey(fresh.plaintext(), fresh.wrapped());
        active.sealed = 1;
        minted++;
        return new Lease(active.material.clone(), active.commitment, active.wrapped);
    }

    /**
     * A version 3 envelope: {@code 0x03 ‖ flags ‖ u16 N ‖ key name ‖ commitment ‖ u16 W ‖ wrapped
     * key ‖ nonce ‖ AES-GCM(body)} with the authenticated header and the binding parts as
     * associated data. Deterministic for a given nonce (the test vectors use it).
     */
    public static byte[] sealV3(byte[] dataKey, byte[] commitment, String keyName, String wrapped, byte[] nonce,
                                int flags, byte[] body, byte[] bindingParts) {
        Envelope.checkKeyName(keyName);
        byte[] name = keyName.getBytes(StandardCharsets.US_ASCII);
        byte[] w = wrapped.getBytes(StandardCharsets.US_ASCII);
        int authenticated = 4 + name.length + commitment.length;
        ByteBuffer head = ByteBuffer.allocate(authenticated + 2 + w.length + nonce.length);
        head.put((byte) Envelope.FORMAT_VERSION_3).put((byte) flags).putShort((short) name.length).put(name)
                .put(commitment).putShort((short) w.length).put(w).put(nonce);
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(dataKey, "AES"),
                    new GCMParameterSpec(Envelope.TAG_LENGTH * 8, nonce));
            cipher.updateAAD(head.array(), 0, authenticated);
            cipher.updateAAD(bindingParts);
            byte[] sealed = cipher.doFinal(body);
            return ByteBuffer.allocate(head.capacity() + sealed.length).put(head.array()).put(sealed).array();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES-GCM is in every JDK", e);
        }
    }

    /** Wipes the data key in use. */
    @Override
    public synchronized void close() {
        if (active != null) {
            Arrays.fill(active.material, (byte) 0);
            active = null;
        }
    }

    /** For tests: the data key bytes in use (wiped on close). */
    synchronized byte[] activeMaterial() {
        return active == null ? null : active.material;
    }
}

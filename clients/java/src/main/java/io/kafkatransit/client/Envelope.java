package io.kafkatransit.client;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.Arrays;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * A parsed kafka-transit envelope (docs/envelope-format.md, versions 3, 2 and 1):
 * {@code version | u16 N | key name | u16 W | wrapped key | 12-byte nonce | ciphertext | 16-byte tag};
 * version 3 adds a flags byte after the version and a 32-byte key commitment after the key name.
 * The {@code authenticatedHeader} starts the associated data: the version byte and the key
 * name in version 2 (the wrapped key is left out, so that it can be rewrapped), everything
 * before the nonce in version 1, version, flags, key name and commitment in version 3.
 */
public record Envelope(int version, String keyName, String wrappedKey, byte[] authenticatedHeader, byte[] nonce,
                       byte[] sealed, int flags, byte[] commitment) {
    /** The version kafka-transit writes. */
    public static final int FORMAT_VERSION = 2;
    /** The first version, still read: its tag covers the whole header, wrapped key included. */
    public static final int FORMAT_VERSION_1 = 1;
    /** Format 3 (docs/protected-records.md): flags and a key commitment. */
    public static final int FORMAT_VERSION_3 = 3;
    public static final int COMMITMENT_LENGTH = 32;
    public static final int NONCE_LENGTH = 12;
    public static final int TAG_LENGTH = 16;
    /** The longest transit key name (and Kafka topic name) kafka-transit accepts. */
    public static final int MAX_KEY_NAME_LENGTH = 249;

    /** A version 1 or 2 envelope (no flags, no commitment). */
    public Envelope(int version, String keyName, String wrappedKey, byte[] authenticatedHeader, byte[] nonce,
                    byte[] sealed) {
        this(version, keyName, wrappedKey, authenticatedHeader, nonce, sealed, 0, null);
    }

    /** True when {@code value} starts like an envelope of a version read here (it may still be malformed). */
    public static boolean looksLikeEnvelope(byte[] value) {
        return value.length > 0
                && (value[0] == FORMAT_VERSION || value[0] == FORMAT_VERSION_1 || value[0] == FORMAT_VERSION_3);
    }

    /** Parses the envelope's fields; does not decrypt. */
    public static Envelope parse(byte[] envelope) {
        if (envelope.length == 0) {
            throw new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: an empty value");
        }
        if (!looksLikeEnvelope(envelope)) {
            throw new TransitReadException(Reason.FORMAT,
                    String.format("not a kafka-transit envelope: unknown format version 0x%02x", envelope[0] & 0xff));
        }
        int at = 1;
        int flags = 0;
        byte[] commitment = null;
        if (envelope[0] == FORMAT_VERSION_3) {
            if (envelope.length < 2) {
                throw truncated("flags");
            }
            flags = Format3.checkFlags(envelope[1] & 0xff, "the envelope");
            at = 2;
        }
        String[] fields = new String[2];
        int[] ends = new int[2];
        String[] names = {"key name", "wrapped key"};
        for (int i = 0; i < 2; i++) {
            if (envelope.length < at + 2) {
                throw truncated(names[i]);
            }
            int length = ((envelope[at] & 0xff) << 8) | (envelope[at + 1] & 0xff);
            if (envelope.length < at + 2 + length) {
                throw truncated(names[i]);
            }
            fields[i] = new String(envelope, at + 2, length, StandardCharsets.UTF_8);
            if (i == 0) {
                checkKeyName(fields[i]);
            }
            at += 2 + length;
            if (i == 0 && envelope[0] == FORMAT_VERSION_3) {
                if (envelope.length < at + COMMITMENT_LENGTH) {
                    throw truncated("key commitment");
                }
                commitment = Arrays.copyOfRange(envelope, at, at + COMMITMENT_LENGTH);
                at += COMMITMENT_LENGTH;
            }
            ends[i] = at;
        }
        if (envelope.length - at < NONCE_LENGTH + TAG_LENGTH) {
            throw new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: truncated before the tag");
        }
        int version = envelope[0];
        int authenticated = version == FORMAT_VERSION_1 ? ends[1] : ends[0];
        return new Envelope(version, fields[0], fields[1], Arrays.copyOfRange(envelope, 0, authenticated),
                Arrays.copyOfRange(envelope, at, at + NONCE_LENGTH),
                Arrays.copyOfRange(envelope, at + NONCE_LENGTH, envelope.length), flags, commitment);
    }

    /**
     * Refuses ({@link Reason#KEY_NAME}) a name that is not a transit key name: 1 to 249 of
     * {@code A-Z a-z 0-9 . _ -}, and not {@code .} or {@code ..}, the one rule of kafka-transit.
     * The envelope's key name comes from the record and goes into a Vault path,
     * {@code transit/decrypt/<key name>}: any other name could steer the request ({@code ..}
     * climbs, {@code /} nests). The message does not repeat the name: it is record data.
     * (Bytes that are not UTF-8 decode to U+FFFD, which is refused too.)
     */
    public static void checkKeyName(String name) {
        String reason = null;
        if (name.isEmpty()) {
            reason = "it is empty";
        } else if (name.length() > MAX_KEY_NAME_LENGTH) {
            reason = "it is longer than 249 characters";
        } else if (name.equals(".") || name.equals("..")) {
            reason = "'.' and '..' are not names";
        } else if (!name.chars().allMatch(c -> c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
                || c == '.' || c == '_' || c == '-')) {
            reason = "only letters, digits, '.', '_' and '-' are allowed";
        }
        if (reason != null) {
            throw new TransitReadException(Reason.KEY_NAME,
                    "not a kafka-transit envelope: the key name is not a transit key name (" + reason + ")");
        }
    }

    private static TransitReadException truncated(String field) {
        return new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: truncated in the " + field);
    }

    /**
     * Opens the envelope with its unwrapped 32-byte data key; the associated data is
     * {@code authenticatedHeader ‖ aad} ({@code aad} is empty for kafka-transit's built-in policies;
     * in version 3 it is the record's binding parts, {@link Format3#bindingParts}). A version 3
     * envelope's commitment is checked first and its body unpadded and decompressed, to at
     * most {@link Format3#DEFAULT_MAX_PLAINTEXT} bytes.
     */
    public byte[] open(byte[] dataKey, byte[] aad) {
        return open(dataKey, aad, Format3.DEFAULT_MAX_PLAINTEXT);
    }

    /** {@link #open(byte[], byte[])}, refusing a version 3 body that decompresses past {@code maxPlaintext}. */
    public byte[] open(byte[] dataKey, byte[] aad, int maxPlaintext) {
        if (version == FORMAT_VERSION_3 && !java.security.MessageDigest.isEqual(commitment, Format3.commitment(dataKey))) {
            throw new TransitReadException(Reason.COMMITMENT, "the envelope's key commitment does not match its data "
                    + "key (its wrapped key was swapped for another data key's)");
        }
        byte[] opened = decrypt(dataKey, aad);
        return version == FORMAT_VERSION_3 ? Format3.decodeBody(opened, flags, maxPlaintext) : opened;
    }

    private byte[] decrypt(byte[] dataKey, byte[] aad) {
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.DECRYPT_MODE, new SecretKeySpec(dataKey, "AES"),
                    new GCMParameterSpec(TAG_LENGTH * 8, nonce));
            cipher.updateAAD(authenticatedHeader);
            cipher.updateAAD(aad);
            return cipher.doFinal(sealed);
        } catch (AEADBadTagException e) {
            throw new TransitReadException(Reason.AUTHENTICATION,
                    "envelope failed authentication (tampered, wrong data key or wrong associated data)");
        } catch (GeneralSecurityException e) {
            throw new TransitReadException(Reason.AUTHENTICATION, "envelope could not be opened: " + e.getMessage());
        }
    }

    @Override
    public String toString() {
        return "Envelope[version=" + version + ", flags=" + flags + ", keyName=" + keyName + ", wrappedKey=" + wrappedKey + ", sealed=" + sealed.length + " bytes]";
    }
}

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
 * A parsed kafka-transit envelope (docs/envelope-format.md, version 1):
 * {@code 0x01 | u16 N | key name | u16 W | wrapped key | 12-byte nonce | ciphertext | 16-byte tag}.
 * The header (everything before the nonce) is authenticated as associated data.
 */
public record Envelope(String keyName, String wrappedKey, byte[] header, byte[] nonce, byte[] sealed) {
    public static final int FORMAT_VERSION = 1;
    public static final int NONCE_LENGTH = 12;
    public static final int TAG_LENGTH = 16;

    /** True when {@code value} starts like an envelope (it may still be malformed). */
    public static boolean looksLikeEnvelope(byte[] value) {
        return value.length > 0 && value[0] == FORMAT_VERSION;
    }

    /** Parses the envelope's fields; does not decrypt. */
    public static Envelope parse(byte[] envelope) {
        if (envelope.length == 0) {
            throw new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: an empty value");
        }
        if (envelope[0] != FORMAT_VERSION) {
            throw new TransitReadException(Reason.FORMAT,
                    String.format("not a kafka-transit envelope: unknown format version 0x%02x", envelope[0] & 0xff));
        }
        int at = 1;
        String[] fields = new String[2];
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
            at += 2 + length;
        }
        if (envelope.length - at < NONCE_LENGTH + TAG_LENGTH) {
            throw new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: truncated before the tag");
        }
        return new Envelope(fields[0], fields[1], Arrays.copyOfRange(envelope, 0, at),
                Arrays.copyOfRange(envelope, at, at + NONCE_LENGTH),
                Arrays.copyOfRange(envelope, at + NONCE_LENGTH, envelope.length));
    }

    private static TransitReadException truncated(String field) {
        return new TransitReadException(Reason.TRUNCATED, "not a kafka-transit envelope: truncated in the " + field);
    }

    /**
     * Opens the envelope with its unwrapped 32-byte data key; the associated data is
     * {@code header ‖ aad} ({@code aad} is empty for kafka-transit's built-in policies).
     */
    public byte[] open(byte[] dataKey, byte[] aad) {
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.DECRYPT_MODE, new SecretKeySpec(dataKey, "AES"),
                    new GCMParameterSpec(TAG_LENGTH * 8, nonce));
            cipher.updateAAD(header);
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
        return "Envelope[keyName=" + keyName + ", wrappedKey=" + wrappedKey + ", sealed=" + sealed.length + " bytes]";
    }
}

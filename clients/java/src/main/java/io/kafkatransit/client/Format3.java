package io.kafkatransit.client;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdInputStream;
import net.jpountz.lz4.LZ4FrameInputStream;
import net.jpountz.lz4.LZ4FrameOutputStream;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Format 3 beyond the envelope bytes (docs/protected-records.md): the flags byte and the
 * {@code kafka-transit.protection} header that carries it in clear, the binding data every
 * ciphertext authenticates, the frame that carries sealed headers, and the compression and
 * padding of envelope bodies.
 */
public final class Format3 {
    /** The header every format 3 record carries in clear: {@code 3;<flags as two hex digits>}. */
    public static final String PROTECTION_HEADER = "kafka-transit.protection";
    /** What a compressed record may expand to unless configured otherwise. */
    public static final int DEFAULT_MAX_PLAINTEXT = 16 << 20;

    public static final int STREAM = 0x01;
    public static final int KEY = 0x02;
    public static final int HEADERS = 0x04;
    public static final int PADDED = 0x08;
    public static final int COMPRESSION = 0x30;
    public static final int ZSTD = 0x10;
    public static final int LZ4 = 0x20;
    public static final int RECORD_KEYS = 0xc0;
    public static final int KEYS_ENCRYPTED = 0x40;
    public static final int KEYS_HMAC = 0x80;

    static final byte[] BINDING_PREFIX = "kafka-transit/3".getBytes(StandardCharsets.US_ASCII);
    static final byte[] COMMITMENT_MESSAGE = "kafka-transit/3 key commitment".getBytes(StandardCharsets.US_ASCII);
    static final int ZSTD_LEVEL = 3;

    private Format3() {
    }

    /** A record header; a null value is a header without value. */
    public record Header(String name, byte[] value) {
        @Override
        public boolean equals(Object other) {
            return other instanceof Header h && h.name.equals(name) && Arrays.equals(h.value, value);
        }

        @Override
        public int hashCode() {
            return name.hashCode() * 31 + Arrays.hashCode(value);
        }

        @Override
        public String toString() {
            return name + (value == null ? "" : "=" + value.length + " bytes");
        }
    }

    /** The flags of {@code b}, refusing what no version gives a meaning (compression 0x30, record keys 0xc0). */
    public static int checkFlags(int b, String where) {
        if ((b & COMPRESSION) == COMPRESSION || (b & RECORD_KEYS) == RECORD_KEYS) {
            throw new TransitReadException(Reason.FLAGS, String.format("%s has unknown flags 0x%02x", where, b));
        }
        return b;
    }

    /** The flags of a {@code kafka-transit.protection} header value. */
    public static int parseProtectionHeader(byte[] value) {
        if (value == null || value.length < 2 || value[0] != '3' || value[1] != ';') {
            throw new TransitReadException(Reason.FLAGS, "the " + PROTECTION_HEADER + " header names an unknown format");
        }
        if (value.length != 4 || Character.digit(value[2], 16) < 0 || Character.digit(value[3], 16) < 0) {
            throw new TransitReadException(Reason.FLAGS,
                    "the " + PROTECTION_HEADER + " header is not \"3;\" and two hex digits");
        }
        return checkFlags(Character.digit(value[2], 16) << 4 | Character.digit(value[3], 16),
                "the " + PROTECTION_HEADER + " header");
    }

    /** The protection header's value for these flags, e.g. {@code 3;5f}. */
    public static byte[] headerValue(int flags) {
        return String.format("3;%02x", flags).getBytes(StandardCharsets.US_ASCII);
    }

    /**
     * The binding data: {@code "kafka-transit/3" ‖ flags ‖ [u16 stream] ‖ [0x00 | 0x01 u32 key] ‖
     * [u32 JSON Pointer]}. {@code key} is the record key as on the sink (null: a null key);
     * {@code pointer} a field's JSON Pointer, null for whole values.
     */
    public static byte[] binding(int flags, String stream, byte[] key, String pointer) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(BINDING_PREFIX);
        out.write(flags);
        out.writeBytes(bindingParts(flags, stream, key, pointer));
        return out.toByteArray();
    }

    /** {@link #binding} without its prefix and flags: what an envelope adds to its authenticated header. */
    public static byte[] bindingParts(int flags, String stream, byte[] key, String pointer) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        if ((flags & STREAM) != 0) {
            byte[] name = stream.getBytes(StandardCharsets.UTF_8);
            out.write(name.length >> 8);
            out.write(name.length);
            out.writeBytes(name);
        }
        if ((flags & KEY) != 0) {
            if (key == null) {
                out.write(0);
            } else {
                out.write(1);
                out.writeBytes(u32(key.length));
                out.writeBytes(key);
            }
        }
        if (pointer != null) {
            byte[] p = pointer.getBytes(StandardCharsets.UTF_8);
            out.writeBytes(u32(p.length));
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    private static byte[] u32(int n) {
        return ByteBuffer.allocate(4).putInt(n).array();
    }

    /** The frame: {@code u32 count ‖ (u32 name length ‖ name ‖ i32 value length or -1 ‖ value)* ‖ value}. */
    public static byte[] frame(List<Header> headers, byte[] value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(u32(headers.size()));
        for (Header h : headers) {
            byte[] name = h.name().getBytes(StandardCharsets.UTF_8);
            out.writeBytes(u32(name.length));
            out.writeBytes(name);
            if (h.value() == null) {
                out.writeBytes(u32(-1));
            } else {
                out.writeBytes(u32(h.value().length));
                out.writeBytes(h.value());
            }
        }
        out.writeBytes(value);
        return out.toByteArray();
    }

    /** A frame's sealed headers and value. */
    public record Unframed(List<Header> headers, byte[] value) {
    }

    public static Unframed unframe(byte[] frame) {
        ByteBuffer in = ByteBuffer.wrap(frame);
        TransitReadException shortFrame = new TransitReadException(Reason.FRAME, "the sealed headers' frame ends too soon");
        if (in.remaining() < 4) {
            throw shortFrame;
        }
        long count = in.getInt() & 0xffffffffL;
        if (count > in.remaining() / 8) { // each header takes at least 8 bytes
            throw shortFrame;
        }
        List<Header> headers = new ArrayList<>((int) count);
        for (long i = 0; i < count; i++) {
            if (in.remaining() < 4) {
                throw shortFrame;
            }
            long nameLength = in.getInt() & 0xffffffffL;
            if (in.remaining() < nameLength + 4) {
                throw shortFrame;
            }
            byte[] name = new byte[(int) nameLength];
            in.get(name);
            int valueLength = in.getInt();
            byte[] value = null;
            if (valueLength < -1) {
                throw new TransitReadException(Reason.FRAME, "the sealed headers' frame holds a negative value length");
            } else if (valueLength >= 0) {
                if (in.remaining() < valueLength) {
                    throw shortFrame;
                }
                value = new byte[valueLength];
                in.get(value);
            }
            var decoder = StandardCharsets.UTF_8.newDecoder();
            try {
                headers.add(new Header(decoder.decode(ByteBuffer.wrap(name)).toString(), value));
            } catch (java.nio.charset.CharacterCodingException e) {
                throw new TransitReadException(Reason.FRAME, "the sealed headers' frame holds a name that is not UTF-8");
            }
        }
        byte[] rest = new byte[in.remaining()];
        in.get(rest);
        return new Unframed(headers, rest);
    }

    /** {@code u32 length ‖ data ‖ zeros} to a multiple of {@code padTo} (> 0). */
    public static byte[] pad(byte[] data, int padTo) {
        int total = (4 + data.length + padTo - 1) / padTo * padTo;
        return ByteBuffer.allocate(total).putInt(data.length).put(data).array();
    }

    public static byte[] unpad(byte[] padded) {
        if (padded.length < 4) {
            throw new TransitReadException(Reason.PADDING, "the padding ends too soon");
        }
        long length = ByteBuffer.wrap(padded).getInt() & 0xffffffffL;
        if (length > padded.length - 4) {
            throw new TransitReadException(Reason.PADDING, "the padding gives a length past the end");
        }
        for (int i = 4 + (int) length; i < padded.length; i++) {
            if (padded[i] != 0) {
                throw new TransitReadException(Reason.PADDING, "the padding is not zeros");
            }
        }
        return Arrays.copyOfRange(padded, 4, 4 + (int) length);
    }

    /** HMAC-SHA256 of the commitment message under the data key. */
    public static byte[] commitment(byte[] dataKey) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(dataKey, "HmacSHA256"));
            return mac.doFinal(COMMITMENT_MESSAGE);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is in every JDK", e);
        }
    }

    /** A version 3 plaintext unpadded and decompressed, never expanded past {@code limit} bytes. */
    static byte[] decodeBody(byte[] opened, int flags, int limit) {
        byte[] data = (flags & PADDED) != 0 ? unpad(opened) : opened;
        int compression = flags & COMPRESSION;
        if (compression == 0) {
            return data;
        }
        String name = compression == ZSTD ? "zstd" : "LZ4";
        try (InputStream in = compression == ZSTD ? new ZstdInputStream(new ByteArrayInputStream(data))
                : new LZ4FrameInputStream(new ByteArrayInputStream(data))) {
            byte[] out = in.readNBytes(limit + 1 > 0 ? limit + 1 : Integer.MAX_VALUE - 8);
            if (out.length > limit) {
                throw new TransitReadException(Reason.TOO_LARGE,
                        "the envelope's body decompresses to more than " + limit + " bytes");
            }
            return out;
        } catch (IOException | RuntimeException e) {
            if (e instanceof TransitReadException t) {
                throw t;
            }
            throw new TransitReadException(Reason.DECOMPRESSION, "the envelope's body is not a valid " + name
                    + " frame: " + e.getMessage());
        }
    }

    /** Compresses (zstd level 3, or an LZ4 frame) and pads a version 3 plaintext as its flags say. */
    static byte[] encodeBody(byte[] plaintext, int flags, int padTo) {
        byte[] body = plaintext;
        if ((flags & COMPRESSION) == ZSTD) {
            body = Zstd.compress(plaintext, ZSTD_LEVEL);
        } else if ((flags & COMPRESSION) == LZ4) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try (LZ4FrameOutputStream lz4 = new LZ4FrameOutputStream(out)) {
                lz4.write(plaintext);
            } catch (IOException e) {
                throw new IllegalStateException("LZ4 to memory cannot fail", e);
            }
            body = out.toByteArray();
        }
        return (flags & PADDED) != 0 ? pad(body, padTo) : body;
    }
}

package io.kafkatransit.client;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;

/**
 * envelope-seal's format 3 options (docs/protected-records.md), by the same names, as
 * producer properties {@code kafka.transit.*}.
 *
 * @param key the transit key that wraps data keys ({@value TransitConfig#KEY})
 * @param recordKeys {@code keep}, {@code encrypt} or {@code hmac} ({@value #RECORD_KEYS})
 * @param recordKeysKey the transit key of {@code encrypt} (derived, convergent) or {@code hmac}
 *     ({@value RecordOptions#RECORD_KEYS_KEY})
 * @param sealHeaders headers sealed in the value ({@value #HEADERS} = {@code seal})
 * @param keepHeaders with sealing, headers that stay in clear as well ({@value #KEEP_HEADERS})
 * @param bind {@code stream}, {@code key} ({@value #BIND}, comma-separated)
 * @param stream the stream name bound ({@value RecordOptions#STREAM}); null: the topic
 * @param compression {@code none}, {@code zstd} or {@code lz4} ({@value #COMPRESSION})
 * @param padTo pad to a multiple of this many bytes; 0: off ({@value #PAD_TO})
 * @param maxRecords records sealed under one data key at most ({@value #MAX_RECORDS}, default 1,000,000)
 * @param maxAge how long a data key seals ({@value #MAX_AGE_MS}, default one hour)
 */
public record WriterOptions(String key, String recordKeys, String recordKeysKey, boolean sealHeaders,
                            List<String> keepHeaders, List<String> bind, String stream, String compression, int padTo,
                            long maxRecords, Duration maxAge) {
    public static final String RECORD_KEYS = TransitConfig.PREFIX + "record.keys";
    public static final String HEADERS = TransitConfig.PREFIX + "headers";
    public static final String KEEP_HEADERS = TransitConfig.PREFIX + "keep.headers";
    public static final String BIND = TransitConfig.PREFIX + "bind";
    public static final String COMPRESSION = TransitConfig.PREFIX + "compression";
    public static final String PAD_TO = TransitConfig.PREFIX + "pad.to";
    public static final String MAX_RECORDS = TransitConfig.PREFIX + "data.key.max.records";
    public static final String MAX_AGE_MS = TransitConfig.PREFIX + "data.key.max.age.ms";

    public WriterOptions {
        keepHeaders = List.copyOf(keepHeaders);
        bind = List.copyOf(bind);
        check(TransitConfig.KEY, key, key != null && isName(key), "a transit key name is required");
        check(RECORD_KEYS, recordKeys, List.of("keep", "encrypt", "hmac").contains(recordKeys),
                "is keep, encrypt or hmac");
        check(RecordOptions.RECORD_KEYS_KEY, recordKeysKey, recordKeys.equals("keep")
                || recordKeysKey != null && isName(recordKeysKey), "record keys " + recordKeys + " need this transit key");
        check(BIND, bind, List.of("stream", "key").containsAll(bind), "lists stream and key");
        check(RecordOptions.STREAM, stream, stream == null || isName(stream), "is 1 to 249 of A-Z a-z 0-9 . _ -");
        check(COMPRESSION, compression, List.of("none", "zstd", "lz4").contains(compression), "is none, zstd or lz4");
        check(PAD_TO, padTo, padTo >= 0 && padTo <= 16 << 20, "is 0 (off) to 16 MiB");
        check(MAX_RECORDS, maxRecords, maxRecords > 0, "must be positive");
        check(MAX_AGE_MS, maxAge, !maxAge.isNegative() && !maxAge.isZero(), "must be positive");
    }

    private static void check(String name, Object value, boolean ok, String why) {
        if (!ok) {
            throw new ConfigException(name, value, why);
        }
    }

    private static boolean isName(String name) {
        try {
            Envelope.checkKeyName(name);
            return true;
        } catch (TransitReadException e) {
            return false;
        }
    }

    /** The flags every record written with these options carries. */
    public int flags() {
        return (bind.contains("stream") ? Format3.STREAM : 0) | (bind.contains("key") ? Format3.KEY : 0)
                | (sealHeaders ? Format3.HEADERS : 0) | (padTo > 0 ? Format3.PADDED : 0)
                | switch (compression) {
                    case "zstd" -> Format3.ZSTD;
                    case "lz4" -> Format3.LZ4;
                    default -> 0;
                }
                | switch (recordKeys) {
                    case "encrypt" -> Format3.KEYS_ENCRYPTED;
                    case "hmac" -> Format3.KEYS_HMAC;
                    default -> 0;
                };
    }

    /** Reads the {@code kafka.transit.*} writer properties of a producer's configuration. */
    public static WriterOptions from(Map<String, ?> configs) {
        String headers = or(RecordOptions.text(configs, HEADERS), "keep");
        if (!headers.equals("keep") && !headers.equals("seal")) {
            throw new ConfigException(HEADERS, headers, "is keep or seal");
        }
        try {
            return new WriterOptions(RecordOptions.text(configs, TransitConfig.KEY),
                    or(RecordOptions.text(configs, RECORD_KEYS), "keep"),
                    RecordOptions.text(configs, RecordOptions.RECORD_KEYS_KEY), headers.equals("seal"),
                    list(configs, KEEP_HEADERS), list(configs, BIND), RecordOptions.text(configs, RecordOptions.STREAM),
                    or(RecordOptions.text(configs, COMPRESSION), "none"),
                    Integer.parseInt(or(RecordOptions.text(configs, PAD_TO), "0")),
                    Long.parseLong(or(RecordOptions.text(configs, MAX_RECORDS), "1000000")),
                    Duration.ofMillis(Long.parseLong(or(RecordOptions.text(configs, MAX_AGE_MS), "3600000"))));
        } catch (NumberFormatException e) {
            throw new ConfigException("invalid kafka.transit number: " + e.getMessage());
        }
    }

    private static String or(String value, String fallback) {
        return value == null ? fallback : value;
    }

    private static List<String> list(Map<String, ?> configs, String name) {
        Object value = configs.get(name);
        if (value instanceof List<?> list) {
            return list.stream().map(Object::toString).toList();
        }
        String text = RecordOptions.text(configs, name);
        return text == null ? List.of() : Arrays.stream(text.split(",")).map(String::strip)
                .filter(s -> !s.isEmpty()).toList();
    }
}

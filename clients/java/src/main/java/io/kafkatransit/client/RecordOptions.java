package io.kafkatransit.client;

import java.util.Arrays;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.common.config.ConfigException;

/**
 * How a reader reads format 3 records (docs/protected-records.md), from consumer properties.
 *
 * @param stream the stream name records are bound to ({@value #STREAM}); null: the topic read
 * @param requireBinding what a record must be bound to, {@code stream} and/or {@code key}
 *     ({@value #REQUIRE_BINDING}, comma-separated); records without it are refused (UNBOUND)
 * @param recordKeysKey the transit key of encrypted record keys ({@value #RECORD_KEYS_KEY})
 * @param maxPlaintext what a compressed record may expand to ({@value #MAX_RECORD_BYTES}, default 16 MiB)
 */
public record RecordOptions(String stream, Set<String> requireBinding, String recordKeysKey, int maxPlaintext) {
    public static final String STREAM = TransitConfig.PREFIX + "stream";
    public static final String REQUIRE_BINDING = TransitConfig.PREFIX + "require.binding";
    public static final String RECORD_KEYS_KEY = TransitConfig.PREFIX + "record.keys.key";
    public static final String MAX_RECORD_BYTES = TransitConfig.PREFIX + "max.record.bytes";
    public static final RecordOptions DEFAULT = new RecordOptions(null, Set.of(), null, Format3.DEFAULT_MAX_PLAINTEXT);

    public RecordOptions {
        requireBinding = Set.copyOf(requireBinding);
        for (String what : requireBinding) {
            if (!what.equals("stream") && !what.equals("key")) {
                throw new ConfigException(REQUIRE_BINDING, what, "takes \"stream\" and \"key\"");
            }
        }
        if (stream != null) {
            try {
                Envelope.checkKeyName(stream);
            } catch (TransitReadException e) {
                throw new ConfigException(STREAM, stream, "a stream name is 1 to 249 of A-Z a-z 0-9 . _ -");
            }
        }
        if (maxPlaintext <= 0) {
            throw new ConfigException(MAX_RECORD_BYTES, maxPlaintext, "must be positive");
        }
    }

    /** Reads the {@code kafka.transit.*} format 3 reader properties. */
    public static RecordOptions from(Map<String, ?> configs) {
        Object require = configs.get(REQUIRE_BINDING);
        Set<String> required = require == null ? Set.of() : Arrays.stream(require.toString().split(","))
                .map(String::strip).filter(s -> !s.isEmpty()).collect(Collectors.toSet());
        Object max = configs.get(MAX_RECORD_BYTES);
        try {
            return new RecordOptions(text(configs, STREAM), required, text(configs, RECORD_KEYS_KEY),
                    max == null ? Format3.DEFAULT_MAX_PLAINTEXT : Integer.parseInt(max.toString()));
        } catch (NumberFormatException e) {
            throw new ConfigException(MAX_RECORD_BYTES, max, "not a number of bytes");
        }
    }

    static String text(Map<String, ?> configs, String name) {
        Object value = configs.get(name);
        return value == null || value.toString().isBlank() ? null : value.toString().strip();
    }
}

package io.kafkatransit.client;

import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;

/**
 * The reader's settings, read from ordinary Kafka consumer properties. Holds where the
 * token comes from, never the token itself.
 *
 * @param address Vault's address ({@value #ADDRESS}; default: the VAULT_ADDR environment variable)
 * @param mount the transit mount ({@value #MOUNT}, default {@code transit})
 * @param key the transit key of {@code vault:v} values; when set, envelopes must name it too ({@value #KEY})
 * @param tokenEnv the environment variable holding the token ({@value #TOKEN_ENV}, default VAULT_TOKEN)
 * @param tokenFile a file holding the token, read at each Vault request so an agent can renew it
 *     ({@value #TOKEN_FILE}; wins over the variable)
 * @param namespace a Vault Enterprise / OpenBao namespace ({@value #NAMESPACE})
 * @param caFile PEM certificates to trust for an https address ({@value #CA_FILE})
 * @param cacheSize unwrapped data keys kept ({@value #CACHE_SIZE}, default 1000)
 * @param timeout one Vault request's time limit ({@value #TIMEOUT_MS}, default 30000)
 * @param subjectKeys records sealed per data subject (docs/forgetting.md): the prefix of the
 *     subjects' transit key names ({@value #SUBJECT_KEYS}, e.g. {@code customers-}); an envelope
 *     is opened under the key it names when the name has this prefix, and refused otherwise.
 *     Instead of {@code key}, not with it (null: off)
 * @param cacheMaxAge how long an unwrapped data key stays cached ({@value #CACHE_MAX_AGE_MS},
 *     default 60000): a subject forgotten while the reader runs stops opening within this
 */
public record TransitConfig(URI address, String mount, String key, String tokenEnv, Path tokenFile,
                            String namespace, Path caFile, int cacheSize, Duration timeout, String subjectKeys,
                            Duration cacheMaxAge) {
    public static final String PREFIX = "kafka.transit.";
    public static final String ADDRESS = PREFIX + "vault.address";
    public static final String MOUNT = PREFIX + "vault.mount";
    public static final String KEY = PREFIX + "vault.key";
    public static final String TOKEN_ENV = PREFIX + "vault.token.env";
    public static final String TOKEN_FILE = PREFIX + "vault.token.file";
    public static final String NAMESPACE = PREFIX + "vault.namespace";
    public static final String CA_FILE = PREFIX + "vault.ca.file";
    public static final String CACHE_SIZE = PREFIX + "cache.size";
    public static final String TIMEOUT_MS = PREFIX + "vault.timeout.ms";
    public static final String SUBJECT_KEYS = PREFIX + "subject.keys";
    public static final String CACHE_MAX_AGE_MS = PREFIX + "data.key.cache.max.age.ms";
    /** The deserializer that turns the plaintext into the value (default: the bytes as they are). */
    public static final String INNER_DESERIALIZER = PREFIX + "inner.deserializer";
    /** Characters of the pseudonym that follows the prefix in a subject's key name (docs/forgetting.md). */
    public static final int SUBJECT_NAME_CHARS = 48;

    public TransitConfig {
        if (subjectKeys != null && subjectKeys.isEmpty()) {
            subjectKeys = null;
        }
        if (subjectKeys != null) {
            checkSubjectKeys(subjectKeys, key);
        }
        if (cacheMaxAge == null) {
            cacheMaxAge = DataKeyCache.DEFAULT_MAX_AGE;
        }
        if (cacheMaxAge.isNegative() || cacheMaxAge.isZero()) {
            throw new ConfigException(CACHE_MAX_AGE_MS, cacheMaxAge.toMillis(), "must be positive");
        }
    }

    /** Without subject keys, data keys cached for the default 60 s (the settings before they existed). */
    public TransitConfig(URI address, String mount, String key, String tokenEnv, Path tokenFile,
                         String namespace, Path caFile, int cacheSize, Duration timeout) {
        this(address, mount, key, tokenEnv, tokenFile, namespace, caFile, cacheSize, timeout, null, null);
    }

    /**
     * Refuses a subject key prefix that cannot begin a transit key name (the runner's own rule:
     * the prefix and a {@value #SUBJECT_NAME_CHARS}-character pseudonym make a valid name), and
     * one given with a single transit key: each envelope names its subject's key, and a reader
     * of subjects' records opens nothing else, as the runner's envelope-open does.
     */
    static void checkSubjectKeys(String prefix, String key) {
        if (key != null && !key.isEmpty()) {
            throw new ConfigException(SUBJECT_KEYS, prefix, "not taken with " + KEY
                    + ": each envelope names its subject's key, which must start with this prefix");
        }
        try {
            Envelope.checkKeyName(prefix + "a".repeat(SUBJECT_NAME_CHARS));
        } catch (TransitReadException e) {
            throw new ConfigException(SUBJECT_KEYS, prefix, "not the prefix of transit key names (the one the "
                    + "sealing pipeline has, e.g. \"customers-\"): with a " + SUBJECT_NAME_CHARS
                    + "-character pseudonym after it, a name is 1 to 249 of A-Z a-z 0-9 . _ -");
        }
    }

    /** Reads the {@code kafka.transit.*} properties of a consumer's configuration. */
    public static TransitConfig from(Map<String, ?> configs) {
        String address = get(configs, ADDRESS, System.getenv("VAULT_ADDR"));
        if (address == null || address.isBlank()) {
            throw new ConfigException(ADDRESS + " is not set (nor VAULT_ADDR)");
        }
        String tokenFile = get(configs, TOKEN_FILE, null);
        String caFile = get(configs, CA_FILE, null);
        try {
            return new TransitConfig(URI.create(address.replaceAll("/+$", "")),
                    get(configs, MOUNT, "transit").replaceAll("^/+|/+$", ""),
                    get(configs, KEY, null),
                    get(configs, TOKEN_ENV, "VAULT_TOKEN"),
                    tokenFile == null ? null : Path.of(tokenFile),
                    get(configs, NAMESPACE, null),
                    caFile == null ? null : Path.of(caFile),
                    Integer.parseInt(get(configs, CACHE_SIZE, String.valueOf(TransitReader.DEFAULT_CACHE_SIZE))),
                    Duration.ofMillis(Long.parseLong(get(configs, TIMEOUT_MS, "30000"))),
                    get(configs, SUBJECT_KEYS, null),
                    Duration.ofMillis(Long.parseLong(get(configs, CACHE_MAX_AGE_MS,
                            String.valueOf(DataKeyCache.DEFAULT_MAX_AGE.toMillis())))));
        } catch (IllegalArgumentException e) {
            throw new ConfigException("invalid kafka.transit setting: " + e.getMessage());
        }
    }

    private static String get(Map<String, ?> configs, String name, String fallback) {
        Object value = configs.get(name);
        return value == null || value.toString().isEmpty() ? fallback : value.toString();
    }
}

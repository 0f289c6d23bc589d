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
 */
public record TransitConfig(URI address, String mount, String key, String tokenEnv, Path tokenFile,
                            String namespace, Path caFile, int cacheSize, Duration timeout) {
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
    /** The deserializer that turns the plaintext into the value (default: the bytes as they are). */
    public static final String INNER_DESERIALIZER = PREFIX + "inner.deserializer";

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
                    Duration.ofMillis(Long.parseLong(get(configs, TIMEOUT_MS, "30000"))));
        } catch (IllegalArgumentException e) {
            throw new ConfigException("invalid kafka.transit setting: " + e.getMessage());
        }
    }

    private static String get(Map<String, ?> configs, String name, String fallback) {
        Object value = configs.get(name);
        return value == null || value.toString().isEmpty() ? fallback : value.toString();
    }
}

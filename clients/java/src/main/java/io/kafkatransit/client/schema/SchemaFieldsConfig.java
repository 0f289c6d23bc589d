package io.kafkatransit.client.schema;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

import org.apache.kafka.common.config.ConfigException;

import io.kafkatransit.client.RecordOptions;
import io.kafkatransit.client.TransitConfig;
import io.kafkatransit.client.VaultTransit;

/**
 * The schema'd-record reader's settings, from ordinary Kafka consumer properties: Vault's as
 * {@link TransitConfig} reads them ({@code kafka.transit.vault.*}), the registry's and the
 * selection's ({@code kafka.transit.schema.*}), format 3's as {@link RecordOptions} reads them
 * ({@code kafka.transit.stream}, {@code kafka.transit.require.binding},
 * {@code kafka.transit.record.keys.key}) and {@value #KEEP_HMAC_KEYS}. Holds where secrets
 * come from, never a token or password read from a file.
 */
public record SchemaFieldsConfig(TransitConfig vault, URI registryUrl, String registryUsername,
                                 String registryPassword, Path registryPasswordFile, String registryToken,
                                 Path registryTokenFile, Path registryCaFile, Duration registryTimeout,
                                 SchemaFieldsOptions options, int cacheSize) {
    public static final String PREFIX = "kafka.transit.schema.";
    public static final String REGISTRY_URL = PREFIX + "registry.url";
    public static final String REGISTRY_USERNAME = PREFIX + "registry.username";
    public static final String REGISTRY_PASSWORD = PREFIX + "registry.password";
    public static final String REGISTRY_PASSWORD_FILE = PREFIX + "registry.password.file";
    public static final String REGISTRY_TOKEN = PREFIX + "registry.token";
    public static final String REGISTRY_TOKEN_FILE = PREFIX + "registry.token.file";
    public static final String REGISTRY_CA_FILE = PREFIX + "registry.ca.file";
    public static final String REGISTRY_TIMEOUT_MS = PREFIX + "registry.timeout.ms";
    public static final String TAGS = PREFIX + "tags";
    public static final String FIELDS = PREFIX + "fields";
    public static final String DETERMINISTIC = PREFIX + "deterministic";
    public static final String CONTEXT = PREFIX + "context";
    public static final String CONTEXT_FROM = PREFIX + "context.from";
    public static final String CACHE_SIZE = PREFIX + "cache.size";
    /**
     * Format 3: pass HMAC'd record keys on as they are (default {@code false}: refuse their
     * records). Not {@code schema.}-prefixed: a record option, as {@code kafka.transit.record.keys.key}.
     */
    public static final String KEEP_HMAC_KEYS = TransitConfig.PREFIX + "keep.hmac.keys";

    @Override
    public String toString() {
        return "SchemaFieldsConfig[registry=" + registryUrl + ", user=" + registryUsername
                + (registryPassword != null ? ", password=***" : "") + (registryToken != null ? ", token=***" : "")
                + ", " + options + "]";
    }

    /** Reads the {@code kafka.transit.*} properties of a consumer's configuration. */
    public static SchemaFieldsConfig from(Map<String, ?> configs) {
        TransitConfig vault = TransitConfig.from(configs);
        String url = get(configs, REGISTRY_URL);
        if (url == null) {
            throw new ConfigException(REGISTRY_URL + " is not set: the Schema Registry the writer schemas come from");
        }
        String username = get(configs, REGISTRY_USERNAME);
        String password = get(configs, REGISTRY_PASSWORD);
        String passwordFile = get(configs, REGISTRY_PASSWORD_FILE);
        String token = get(configs, REGISTRY_TOKEN);
        String tokenFile = get(configs, REGISTRY_TOKEN_FILE);
        if (username != null && password == null && passwordFile == null) {
            throw new ConfigException(REGISTRY_USERNAME + " is set without " + REGISTRY_PASSWORD + " or "
                    + REGISTRY_PASSWORD_FILE);
        }
        if (username != null && (token != null || tokenFile != null)) {
            throw new ConfigException("set basic auth (" + REGISTRY_USERNAME + ") or a bearer token ("
                    + REGISTRY_TOKEN + "), not both");
        }
        String deterministic = get(configs, DETERMINISTIC);
        if (deterministic != null && !deterministic.equalsIgnoreCase("true") && !deterministic.equalsIgnoreCase("false")) {
            throw new ConfigException(DETERMINISTIC, deterministic, "true or false");
        }
        String keepHmacKeys = get(configs, KEEP_HMAC_KEYS);
        if (keepHmacKeys != null && !keepHmacKeys.equalsIgnoreCase("true") && !keepHmacKeys.equalsIgnoreCase("false")) {
            throw new ConfigException(KEEP_HMAC_KEYS, keepHmacKeys, "true or false");
        }
        String contextFrom = get(configs, CONTEXT_FROM);
        if (contextFrom != null && !contextFrom.equals("record-key")) {
            throw new ConfigException(CONTEXT_FROM, contextFrom, "the only source is record-key");
        }
        Object rawTags = configs.get(TAGS);
        List<String> tags = rawTags == null ? List.of("PII") : list(rawTags);
        String caFile = get(configs, REGISTRY_CA_FILE);
        // Format 3 by the same properties as KafkaTransitDeserializer's (kafka.transit.stream,
        // kafka.transit.require.binding, kafka.transit.record.keys.key), so that one consumer
        // configuration serves both readers.
        RecordOptions records = RecordOptions.from(configs);
        try {
            SchemaFieldsOptions options = new SchemaFieldsOptions(vault.key(), tags, list(configs.get(FIELDS)),
                    Boolean.parseBoolean(deterministic), get(configs, CONTEXT), contextFrom != null, records,
                    Boolean.parseBoolean(keepHmacKeys));
            new Selection(options.tags(), options.fields());
            return new SchemaFieldsConfig(vault, URI.create(url), username, password,
                    passwordFile == null ? null : Path.of(passwordFile), token,
                    tokenFile == null ? null : Path.of(tokenFile), caFile == null ? null : Path.of(caFile),
                    Duration.ofMillis(Long.parseLong(orDefault(configs, REGISTRY_TIMEOUT_MS, "30000"))),
                    options, Integer.parseInt(orDefault(configs, CACHE_SIZE,
                            String.valueOf(SchemaFieldsReader.DEFAULT_CACHE_SIZE))));
        } catch (IllegalArgumentException e) {
            throw new ConfigException("invalid kafka.transit.schema setting: " + e.getMessage());
        }
    }

    private static String orDefault(Map<String, ?> configs, String name, String fallback) {
        String value = get(configs, name);
        return value == null ? fallback : value;
    }

    private static String get(Map<String, ?> configs, String name) {
        Object value = configs.get(name);
        return value == null || value.toString().isEmpty() ? null : value.toString();
    }

    /** A list property: a List, or comma-separated text. */
    private static List<String> list(Object value) {
        if (value == null) {
            return List.of();
        }
        Collection<?> items = value instanceof Collection<?> c ? c : Arrays.asList(value.toString().split(","));
        List<String> out = new ArrayList<>();
        for (Object item : items) {
            String text = String.valueOf(item).strip();
            if (!text.isEmpty()) {
                out.add(text);
            }
        }
        return out;
    }

    private static String readSecret(Path file, String what) {
        try {
            return Files.readString(file).strip();
        } catch (IOException e) {
            throw new SchemaFieldsException(SchemaFieldsException.Reason.CONFIG,
                    "cannot read the schema registry " + what + " file " + file + ": " + e);
        }
    }

    /** The registry client: the password or token file re-read at each request. */
    public SchemaRegistry registry() {
        Supplier<String> authorization = null;
        if (registryUsername != null) {
            String user = registryUsername;
            authorization = registryPassword != null ? () -> SchemaRegistry.basic(user, registryPassword)
                    : () -> SchemaRegistry.basic(user, readSecret(registryPasswordFile, "password"));
        } else if (registryToken != null) {
            authorization = () -> "Bearer " + registryToken;
        } else if (registryTokenFile != null) {
            authorization = () -> "Bearer " + readSecret(registryTokenFile, "token");
        }
        return new SchemaRegistry(registryUrl, authorization,
                registryCaFile == null ? null : VaultTransit.trusting(registryCaFile), registryTimeout, cacheSize);
    }

    public SchemaFieldsReader reader() {
        return new SchemaFieldsReader(registry(), VaultTransit.from(vault), options, cacheSize);
    }
}

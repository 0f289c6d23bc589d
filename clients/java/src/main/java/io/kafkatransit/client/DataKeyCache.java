package io.kafkatransit.client;

import java.time.Duration;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * A bounded LRU of unwrapped data keys, keyed by transit key name and wrapped key, each
 * kept at most {@code maxAge} after it was unwrapped. Keys are zeroed when evicted,
 * expired, replaced or cleared. Thread-safe.
 *
 * <p>The age bound is what makes {@code kafka-transit forget} reach a running reader: Vault
 * refuses to unwrap a forgotten subject's data keys, but a key unwrapped before the forget
 * would open that subject's records for as long as it stayed cached. It is measured from
 * the unwrap, not from the last use, since a busy subject would otherwise keep its key
 * forever. There is no background thread (a deserializer should not start one): an expired
 * key is never returned, and is wiped when it is next looked up or by the sweep that runs
 * at most once per {@code min(maxAge, 1 s)} of use.
 */
final class DataKeyCache {
    /** How long a data key stays cached unless configured otherwise. */
    static final Duration DEFAULT_MAX_AGE = Duration.ofSeconds(60);
    private static final long MAX_SWEEP_INTERVAL = Duration.ofSeconds(1).toNanos();

    record Slot(String keyName, String wrappedKey) {
    }

    private record Entry(byte[] key, long unwrapped) {
    }

    private final int capacity;
    private final long maxAge;
    private final long sweepInterval;
    private final LongSupplier nanos;
    private final LinkedHashMap<Slot, Entry> keys;
    private long lastSweep;

    DataKeyCache(int capacity) {
        this(capacity, DEFAULT_MAX_AGE, System::nanoTime);
    }

    /** @param nanos a monotonic clock in nanoseconds ({@code System::nanoTime}; tests pass their own) */
    DataKeyCache(int capacity, Duration maxAge, LongSupplier nanos) {
        if (capacity < 1) {
            throw new IllegalArgumentException("the data key cache holds at least one key");
        }
        if (maxAge.isNegative() || maxAge.isZero()) {
            throw new IllegalArgumentException("the data key cache's max age must be positive");
        }
        this.capacity = capacity;
        // Saturated: Duration.toNanos throws past 292 years, a plausible "never" in a config.
        this.maxAge = maxAge.compareTo(Duration.ofNanos(Long.MAX_VALUE)) >= 0 ? Long.MAX_VALUE : maxAge.toNanos();
        this.sweepInterval = Math.min(this.maxAge, MAX_SWEEP_INTERVAL);
        this.nanos = nanos;
        this.lastSweep = nanos.getAsLong();
        this.keys = new LinkedHashMap<>(16, 0.75f, true) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<Slot, Entry> eldest) {
                if (size() <= DataKeyCache.this.capacity) {
                    return false;
                }
                Arrays.fill(eldest.getValue().key, (byte) 0);
                return true;
            }
        };
    }

    /** A copy of the cached key (the caller wipes it), or null when absent or older than the max age. */
    synchronized byte[] get(Slot slot) {
        long now = nanos.getAsLong();
        sweepIfDue(now);
        Entry entry = keys.get(slot);
        if (entry == null) {
            return null;
        }
        if (expired(entry, now)) {
            keys.remove(slot);
            Arrays.fill(entry.key, (byte) 0);
            return null;
        }
        return entry.key.clone();
    }

    /** Takes ownership of {@code key}: the cache wipes it when it is evicted or expires. */
    synchronized void put(Slot slot, byte[] key) {
        long now = nanos.getAsLong();
        sweepIfDue(now);
        Entry previous = keys.put(slot, new Entry(key, now));
        if (previous != null && previous.key != key) {
            Arrays.fill(previous.key, (byte) 0);
        }
    }

    /**
     * Drops (and wipes) every data key of transit key {@code keyName}: once Vault says the key
     * is gone (a forgotten subject), keys unwrapped before must not open more of its records.
     */
    synchronized void dropKeyName(String keyName) {
        for (Iterator<Map.Entry<Slot, Entry>> it = keys.entrySet().iterator(); it.hasNext();) {
            Map.Entry<Slot, Entry> e = it.next();
            if (e.getKey().keyName().equals(keyName)) {
                Arrays.fill(e.getValue().key, (byte) 0);
                it.remove();
            }
        }
    }

    /** The keys cached and not expired. */
    synchronized int size() {
        sweep(nanos.getAsLong());
        return keys.size();
    }

    synchronized void clear() {
        keys.values().forEach(entry -> Arrays.fill(entry.key, (byte) 0));
        keys.clear();
    }

    private boolean expired(Entry entry, long now) {
        // Differences, not comparisons of nanoTime values, which may overflow.
        return now - entry.unwrapped >= maxAge;
    }

    private void sweepIfDue(long now) {
        // A full pass per lookup would cost the whole cache per record; once per interval
        // bounds how long an expired key stays in memory while the reader is used.
        if (now - lastSweep >= sweepInterval) {
            sweep(now);
        }
    }

    private void sweep(long now) {
        lastSweep = now;
        for (Iterator<Entry> it = keys.values().iterator(); it.hasNext();) {
            Entry entry = it.next();
            if (expired(entry, now)) {
                Arrays.fill(entry.key, (byte) 0);
                it.remove();
            }
        }
    }
}

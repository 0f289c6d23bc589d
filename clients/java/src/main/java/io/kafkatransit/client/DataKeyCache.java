package io.kafkatransit.client;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A bounded LRU of unwrapped data keys, keyed by transit key name and wrapped key. Keys
 * are zeroed when evicted, replaced or cleared. Thread-safe.
 */
final class DataKeyCache {
    record Slot(String keyName, String wrappedKey) {
    }

    private final int capacity;
    private final LinkedHashMap<Slot, byte[]> keys;

    DataKeyCache(int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("the data key cache holds at least one key");
        }
        this.capacity = capacity;
        this.keys = new LinkedHashMap<>(16, 0.75f, true) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<Slot, byte[]> eldest) {
                if (size() <= DataKeyCache.this.capacity) {
                    return false;
                }
                Arrays.fill(eldest.getValue(), (byte) 0);
                return true;
            }
        };
    }

    /** A copy of the cached key (the caller wipes it), or null. */
    synchronized byte[] get(Slot slot) {
        byte[] key = keys.get(slot);
        return key == null ? null : key.clone();
    }

    /** Takes ownership of {@code key}: the cache wipes it when it is evicted. */
    synchronized void put(Slot slot, byte[] key) {
        byte[] previous = keys.put(slot, key);
        if (previous != null && previous != key) {
            Arrays.fill(previous, (byte) 0);
        }
    }

    synchronized int size() {
        return keys.size();
    }

    synchronized void clear() {
        keys.values().forEach(key -> Arrays.fill(key, (byte) 0));
        keys.clear();
    }
}

package kafkatransit

import (
	"container/list"
	"sync"
	"time"
)

// DefaultCacheSize is how many unwrapped data keys a Reader keeps unless told otherwise.
const DefaultCacheSize = 1000

// DefaultCacheMaxAge is how long a Reader keeps an unwrapped data key unless told
// otherwise. It bounds how long a forgotten data subject's records still open in a
// running reader (docs/forgetting.md): after it the data key is unwrapped again, and
// Vault no longer has the subject's key.
const DefaultCacheMaxAge = 60 * time.Second

type slot struct{ keyName, wrappedKey string }

type cached struct {
	slot    slot
	key     []byte
	added   time.Time     // when the key was unwrapped; a use does not renew it
	lru     *list.Element // in keyCache.order
	byAdded *list.Element // in keyCache.ages
}

// keyCache is a bounded LRU of data keys that zeroes keys it evicts, and drops each key
// maxAge after it was unwrapped, however often it is used. Safe for concurrent use.
type keyCache struct {
	mu       sync.Mutex
	capacity int
	maxAge   time.Duration
	now      func() time.Time // time.Now; tests set a clock of their own
	order    *list.List       // front: most recently used
	// ages holds the same entries, oldest unwrap at the front, so that expired keys are
	// wiped at every get and put, not only when asked for again: a subject's key that is
	// never read again leaves memory within maxAge of the next read, not at eviction.
	ages    *list.List
	entries map[slot]*cached
}

func newKeyCache(capacity int, maxAge time.Duration) *keyCache {
	if capacity < 1 {
		capacity = DefaultCacheSize
	}
	if maxAge <= 0 {
		maxAge = DefaultCacheMaxAge
	}
	return &keyCache{capacity: capacity, maxAge: maxAge, now: time.Now, order: list.New(), ages: list.New(),
		entries: map[slot]*cached{}}
}

// get returns a copy of the key (the caller wipes it), or nil when it is not cached or
// is maxAge old.
func (c *keyCache) get(s slot) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	entry, ok := c.entries[s]
	if !ok {
		return nil
	}
	c.order.MoveToFront(entry.lru)
	return append([]byte(nil), entry.key...)
}

// put takes ownership of key: the cache zeroes it when it is evicted, expires or is replaced.
func (c *keyCache) put(s slot, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	now := c.now()
	if entry, ok := c.entries[s]; ok {
		wipe(entry.key)
		entry.key, entry.added = key, now
		c.order.MoveToFront(entry.lru)
		c.ages.MoveToBack(entry.byAdded)
		return
	}
	entry := &cached{slot: s, key: key, added: now}
	entry.lru = c.order.PushFront(entry)
	entry.byAdded = c.ages.PushBack(entry)
	c.entries[s] = entry
	for c.order.Len() > c.capacity {
		c.remove(c.order.Back().Value.(*cached))
	}
}

// expire wipes the keys unwrapped maxAge ago or earlier; c.mu is held.
func (c *keyCache) expire() {
	now := c.now()
	for front := c.ages.Front(); front != nil; front = c.ages.Front() {
		entry := front.Value.(*cached)
		if now.Sub(entry.added) < c.maxAge { // time.Now's monotonic reading: no clock steps
			return
		}
		c.remove(entry)
	}
}

func (c *keyCache) remove(entry *cached) {
	wipe(entry.key)
	c.order.Remove(entry.lru)
	c.ages.Remove(entry.byAdded)
	delete(c.entries, entry.slot)
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	return c.order.Len()
}

func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, entry := range c.entries {
		wipe(entry.key)
	}
	c.entries = map[slot]*cached{}
	c.order.Init()
	c.ages.Init()
}

func wipe(b []byte) {
	clear(b)
}

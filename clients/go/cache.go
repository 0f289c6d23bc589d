package kafkatransit

import (
	"container/list"
	"sync"
)

// DefaultCacheSize is how many unwrapped data keys a Reader keeps unless told otherwise.
const DefaultCacheSize = 1000

type slot struct{ keyName, wrappedKey string }

type cached struct {
	slot slot
	key  []byte
}

// keyCache is a bounded LRU of data keys that zeroes keys it evicts. Safe for concurrent use.
type keyCache struct {
	mu       sync.Mutex
	capacity int
	order    *list.List // front: most recently used
	entries  map[slot]*list.Element
}

func newKeyCache(capacity int) *keyCache {
	if capacity < 1 {
		capacity = DefaultCacheSize
	}
	return &keyCache{capacity: capacity, order: list.New(), entries: map[slot]*list.Element{}}
}

// get returns a copy of the key (the caller wipes it), or nil.
func (c *keyCache) get(s slot) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	element, ok := c.entries[s]
	if !ok {
		return nil
	}
	c.order.MoveToFront(element)
	return append([]byte(nil), element.Value.(*cached).key...)
}

// put takes ownership of key: the cache zeroes it when it is evicted or replaced.
func (c *keyCache) put(s slot, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if element, ok := c.entries[s]; ok {
		entry := element.Value.(*cached)
		wipe(entry.key)
		entry.key = key
		c.order.MoveToFront(element)
		return
	}
	c.entries[s] = c.order.PushFront(&cached{slot: s, key: key})
	for c.order.Len() > c.capacity {
		oldest := c.order.Back()
		entry := oldest.Value.(*cached)
		wipe(entry.key)
		delete(c.entries, entry.slot)
		c.order.Remove(oldest)
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, element := range c.entries {
		wipe(element.Value.(*cached).key)
	}
	c.entries = map[slot]*list.Element{}
	c.order.Init()
}

func wipe(b []byte) {
	clear(b)
}

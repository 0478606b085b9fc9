package sandboxgit

import (
	"container/list"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// baseCache keeps objects rebuilt from pack entries, by pack and offset, up to a
// number of bytes, dropping the least recently used first. It is safe for
// concurrent use; the objects it holds are shared and must not be modified.
type baseCache struct {
	mu        sync.Mutex
	max, used int
	order     *list.List // of *cached, most recent first
	byKey     map[cacheKey]*list.Element
}

type cacheKey struct {
	p   *Pack
	off int64
}

type cached struct {
	key  cacheKey
	typ  plumbing.ObjectType
	data []byte
}

func newBaseCache(max int) *baseCache {
	return &baseCache{max: max, order: list.New(), byKey: map[cacheKey]*list.Element{}}
}

func (c *baseCache) get(p *Pack, off int64) (plumbing.ObjectType, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[cacheKey{p, off}]
	if !ok {
		return 0, nil, false
	}
	c.order.MoveToFront(el)
	v := el.Value.(*cached)
	return v.typ, v.data, true
}

func (c *baseCache) put(p *Pack, off int64, typ plumbing.ObjectType, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{p, off}
	if _, ok := c.byKey[k]; ok || len(data) > c.max/4 {
		return
	}
	c.byKey[k] = c.order.PushFront(&cached{k, typ, data})
	c.used += len(data)
	for c.used > c.max {
		el := c.order.Back()
		v := el.Value.(*cached)
		c.order.Remove(el)
		delete(c.byKey, v.key)
		c.used -= len(v.data)
	}
}

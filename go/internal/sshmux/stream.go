package sshmux

import (
	"io"
	"sync"
)

// Flow control, one stream at a time (stdin; stdout; stderr), as SSH does it
// per channel: the sender may have at most the credit it was granted in
// flight, the receiver buffers what arrives (never more than it granted) and
// grants again what has been read. So a stream that nobody reads stops its
// sender without stopping the other streams or the requests (a signal gets
// through while stdin is blocked), and no side buffers without bound.

// credit is the sender's side: how many bytes it may still send.
type credit struct {
	mu     sync.Mutex
	cond   sync.Cond
	n      int
	closed bool
}

func newCredit(n int) *credit {
	c := &credit{n: n}
	c.cond.L = &c.mu
	return c
}

// take waits until some credit is there and takes up to max of it; false
// once closed.
func (c *credit) take(max int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n == 0 && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, false
	}
	n := min(c.n, max)
	c.n -= n
	return n, true
}

// add grants n more bytes; false when the total would exceed a window, which
// only a broken peer asks for.
func (c *credit) add(n uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if uint64(c.n)+uint64(n) > window {
		return false
	}
	c.n += int(n)
	c.cond.Broadcast()
	return true
}

// refund gives back credit taken and not used.
func (c *credit) refund(n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *credit) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cond.Broadcast()
}

// buffer is the receiver's side: bytes that arrived and were not read yet.
// Read grants what it consumed back to the sender through grant, in batches,
// so a stream of small reads does not answer each with a frame.
type buffer struct {
	mu      sync.Mutex
	cond    sync.Cond
	data    []byte
	granted int // bytes the sender may still send: window minus unread, minus ungranted
	unsent  int // bytes read but not granted back yet
	eof     bool
	grant   func(n int)
}

func newBuffer(grant func(n int)) *buffer {
	b := &buffer{granted: window, grant: grant}
	b.cond.L = &b.mu
	return b
}

// put adds received bytes; false when the sender sent more than it was
// granted, or after EOF.
func (b *buffer) put(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > b.granted || b.eof {
		return false
	}
	b.granted -= len(p)
	b.data = append(b.data, p...)
	b.cond.Broadcast()
	return true
}

// end marks the end of the stream: Read returns io.EOF once it is empty.
func (b *buffer) end() {
	b.mu.Lock()
	b.eof = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *buffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	for len(b.data) == 0 && !b.eof {
		b.cond.Wait()
	}
	if len(b.data) == 0 {
		b.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	if len(b.data) == 0 {
		b.data = nil // let the backing array go
	}
	b.unsent += n
	send := 0
	if b.unsent >= window/4 || len(b.data) == 0 {
		send, b.unsent = b.unsent, 0
		b.granted += send
	}
	eof := b.eof
	b.mu.Unlock()
	if send > 0 && !eof {
		b.grant(send)
	}
	return n, nil
}

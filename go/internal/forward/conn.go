package forward

import (
	"context"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Conn holds one SSH connection for many forwarded connections, for the
// foreground `forward` (the daemon's forwards use its held connection): made
// on first use, made again on the next use after it broke (the VM
// restarted). Every channel shares it, as `ssh -L` does.
type Conn struct {
	// Dial makes a new authenticated, pinned connection.
	Dial func(ctx context.Context) (*ssh.Client, error)

	mu sync.Mutex
	c  *ssh.Client
}

// Get returns the connection, making it when there is none.
func (h *Conn) Get(ctx context.Context) (Dialer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c != nil {
		return h.c, nil
	}
	c, err := h.Dial(ctx)
	if err != nil {
		return nil, err
	}
	h.c = c
	go func() {
		c.Wait()
		h.mu.Lock()
		if h.c == c {
			h.c = nil
		}
		h.mu.Unlock()
	}()
	return c, nil
}

// Close closes the connection, if one is open.
func (h *Conn) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return nil
	}
	err := h.c.Close()
	h.c = nil
	return err
}

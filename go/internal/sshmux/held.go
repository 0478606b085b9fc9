package sshmux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/sshconn"
)

// Keepalive: a connection whose VM hangs (or whose forwarder lost it) is
// noticed within KeepaliveInterval + KeepaliveTimeout, closed and made again.
const (
	KeepaliveInterval = 15 * time.Second
	KeepaliveTimeout  = 10 * time.Second
)

// Spare connections, for sessions the held connection cannot take (see
// Lease): at most maxSpareDials being made at once (dropbear drops a client's
// sixth unauthenticated connection, MAX_UNAUTH_PER_IP), at most maxIdleSpares
// kept for the next burst, each for spareIdle.
const (
	maxSpareDials = 3
	maxIdleSpares = 8
	spareIdle     = 30 * time.Second
	spareWait     = 2 * time.Minute // a queue of sessions in a burst, each waiting for a connection
)

// errHeldEnded answers Conn once the held connection is given up.
var errHeldEnded = errors.New("the host daemon no longer holds a connection to the sandbox")

// Held keeps one authenticated connection to a sandbox, with its pinned host
// key, makes it again when it drops, and lends connections to sessions.
type Held struct {
	Target sshconn.Target
	// Hint carries the guest's readiness announcements (package announce).
	Hint <-chan struct{}
	// FirstTimeout bounds the wait for the first connection; 0 means none.
	FirstTimeout time.Duration
	Logf         func(format string, args ...any)

	mu        sync.Mutex
	c         *ssh.Client
	ended     bool
	changed   chan struct{} // closed when c or ended changes
	exclusive bool          // c's server takes one session per connection
	spares    map[*ssh.Client]bool
	idle      []idleSpare
	dials     int // spare connections being made
}

type idleSpare struct {
	c     *ssh.Client
	since time.Time
}

// NewHeld returns a Held for target; see the fields for the rest.
func NewHeld(target sshconn.Target, hint <-chan struct{}, firstTimeout time.Duration, logf func(string, ...any)) *Held {
	return &Held{Target: target, Hint: hint, FirstTimeout: firstTimeout, Logf: logf,
		spares: map[*ssh.Client]bool{}}
}

// Run connects, calls ready once the first connection is made, and keeps a
// connection until ctx ends or gone is closed (the VM has ended). It returns
// the first connection's error (the sandbox never became reachable), a host
// key mismatch, or nil. Every connection it lent is closed when it returns.
func (h *Held) Run(ctx context.Context, gone <-chan struct{}, ready func()) error {
	defer h.closeAll()
	for first := true; ; first = false {
		c, err := h.dial(ctx, gone, first)
		var mismatch *sshconn.HostKeyMismatchError
		switch {
		case err == nil:
		case first || errors.As(err, &mismatch):
			return err
		default:
			return nil // ctx ended or the VM is gone
		}
		h.set(c)
		if first {
			ready()
		} else {
			h.logf("connected to %s again", h.Target.Addr)
		}
		err = h.hold(ctx, c, gone)
		h.set(nil)
		if err == nil {
			return nil
		}
		h.logf("connection to %s lost (%v); connecting again", h.Target.Addr, err)
	}
}

func (h *Held) dial(ctx context.Context, gone <-chan struct{}, first bool) (*ssh.Client, error) {
	if first && h.FirstTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.FirstTimeout)
		defer cancel()
	}
	return sshconn.DialReady(ctx, h.Target, gone, h.Hint)
}

// hold watches c until it drops (returned as an error) or it is no longer
// wanted (nil; c is closed).
func (h *Held) hold(ctx context.Context, c *ssh.Client, gone <-chan struct{}) error {
	dropped := make(chan error, 1)
	go func() { dropped <- c.Wait() }()
	tick := time.NewTicker(KeepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-dropped:
			if err == nil {
				err = errors.New("closed")
			}
			return err
		case <-ctx.Done():
			c.Close()
			return nil
		case <-gone:
			c.Close()
			return nil
		case <-tick.C:
			go keepalive(c)
		}
	}
}

// keepalive closes c when it does not answer a request in time; the server's
// refusal is an answer (dropbear refuses keepalive@openssh.com).
func keepalive(c *ssh.Client) {
	t := time.AfterFunc(KeepaliveTimeout, func() { c.Close() })
	defer t.Stop()
	c.SendRequest("keepalive@openssh.com", true, nil)
}

func (h *Held) set(c *ssh.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.c = c
	if c != nil {
		h.exclusive = exclusiveSessions(c.ServerVersion())
	}
	h.wake()
}

// wake tells the waiters of Conn that something changed; h.mu is held.
func (h *Held) wake() {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// closeAll ends the held connection's life: Conn fails from now on, and the
// spare connections are closed with their sessions.
func (h *Held) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.c, h.ended = nil, true
	for c := range h.spares {
		c.Close()
	}
	h.spares, h.idle = map[*ssh.Client]bool{}, nil
	h.wake()
}

// Conn returns the held connection, waiting for it while it is being made,
// until ctx ends.
func (h *Held) Conn(ctx context.Context) (*ssh.Client, error) {
	for {
		h.mu.Lock()
		c, ended := h.c, h.ended
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		changed := h.changed
		h.mu.Unlock()
		switch {
		case c != nil:
			return c, nil
		case ended:
			return nil, errHeldEnded
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("not connected to %s: %w", h.Target.Addr, context.Cause(ctx))
		}
	}
}

// Lease lends a connection to one session until release is called: the held
// connection, shared by every session, unless its server takes one session
// per connection in its life (exclusiveSessions) or spare is asked for (the
// held connection refused the session: OpenSSH's MaxSessions). Then
// whichever comes first within spareWait: an idle spare connection (never
// for an exclusive server: each of its sessions gets a new connection,
// closed with it), or a turn to make a new one. ctx bounds the wait for
// the held connection while it is being made again.
func (h *Held) Lease(ctx context.Context, spare bool) (Conn, func(), error) {
	if _, err := h.Conn(ctx); err != nil {
		return nil, nil, err
	}
	timeout := time.NewTimer(spareWait)
	defer timeout.Stop()
	for {
		h.mu.Lock()
		c := h.c
		switch {
		case h.ended:
			h.mu.Unlock()
			return nil, nil, errHeldEnded
		case !spare && c != nil && !h.exclusive:
			h.mu.Unlock()
			return c, func() {}, nil
		case len(h.idle) > 0 && !h.exclusive:
			s := h.idle[len(h.idle)-1].c
			h.idle = h.idle[:len(h.idle)-1]
			h.mu.Unlock()
			return s, func() { h.giveBack(s) }, nil
		case h.dials < maxSpareDials:
			h.dials++
			h.mu.Unlock()
			s, err := h.dialSpare()
			if err != nil {
				return nil, nil, err
			}
			return s, func() { h.giveBack(s) }, nil
		}
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			return nil, nil, fmt.Errorf("no connection to %s free within %v", h.Target.Addr, spareWait)
		}
	}
}

// dialSpare makes a spare connection in a turn Lease took.
func (h *Held) dialSpare() (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), spareWait)
	defer cancel()
	// A burst under load meets dropbear's limit of unauthenticated
	// connections even at maxSpareDials; the client falling back to a
	// connection of its own would meet it too, so the dial is retried.
	s, err := sshconn.DialBusy(ctx, h.Target)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dials--
	h.wake()
	if err != nil {
		return nil, err
	}
	if h.ended {
		s.Close()
		return nil, errHeldEnded
	}
	h.spares[s] = true
	go func() {
		s.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.spares, s)
		h.idle = removeIdle(h.idle, s)
	}()
	return s, nil
}

// giveBack ends a lease: a spare waits idle for the next session, for
// spareIdle, unless its server is exclusive (closed: it carried its one
// session) or enough spares wait already.
func (h *Held) giveBack(c *ssh.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.wake()
	if !h.spares[c] {
		return // the held connection while shared, or dropped meanwhile
	}
	if h.exclusive || len(h.idle) == maxIdleSpares {
		c.Close()
		return
	}
	now := time.Now()
	h.idle = append(h.idle, idleSpare{c, now})
	time.AfterFunc(spareIdle, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, s := range h.idle {
			if s.c == c && s.since == now {
				c.Close() // Wait returns: removed from the lists
			}
		}
	})
}

func removeIdle(idle []idleSpare, c *ssh.Client) []idleSpare {
	out := idle[:0]
	for _, s := range idle {
		if s.c != c {
			out = append(out, s)
		}
	}
	return out
}

// exclusiveSessions reports whether a server must get one session per
// connection in the connection's life: dropbear before 2024.86 closes a
// session channel whose command has not started as soon as another session's
// process on the same connection exits, still runs the command if its exec
// was on the way, and then aborts (`!channel->sent_close`), taking every
// session of the connection with it (fixed upstream in 71521d1b). One
// session after another was not enough either: twice in five .ci/run
// rehearsals (30 Nov 2026) an exec right after another got its session
// closed before its exec was answered, by all the guest's logs show on the
// same connection. The version is the server's identification line,
// "SSH-2.0-dropbear_2022.83".
func exclusiveSessions(serverVersion []byte) bool {
	v, ok := strings.CutPrefix(string(serverVersion), "SSH-2.0-dropbear")
	if !ok {
		return false
	}
	v = strings.TrimPrefix(v, "_")
	var year, release int
	if _, err := fmt.Sscanf(v, "%d.%d", &year, &release); err != nil {
		return true // a dropbear that does not say: assume the old behaviour
	}
	return release < 86
}

func (h *Held) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Dialer opens a connection to an address as the guest sees it; an
// *ssh.Client does, through a direct-tcpip channel.
type Dialer interface {
	Dial(network, addr string) (net.Conn, error)
}

// GuestHost is the name the guest's sshd connects to: "localhost", not
// 127.0.0.1, so a dev server bound to ::1 only (Node resolves localhost so)
// is reached as well as one on 127.0.0.1 or 0.0.0.0; both OpenSSH and
// dropbear try each address the name has.
const GuestHost = "localhost"

// ConnWait bounds the wait for the SSH connection (being made, or made
// again): a forwarded connection then fails rather than hangs.
const ConnWait = 30 * time.Second

// Serve accepts connections on l until it is closed or ctx ends, and relays
// each one to l's guest port through a connection from conn. A connection
// that cannot be opened in the guest (nothing listens there) is closed and
// reported to logf; the others go on.
func Serve(ctx context.Context, l *Listener, conn func(context.Context) (Dialer, error), logf func(format string, args ...any)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	})
	defer stop()
	guest := net.JoinHostPort(GuestHost, strconv.Itoa(l.GuestPort))
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(open, c); mu.Unlock() }()
			if err := relay(ctx, c, guest, conn); err != nil {
				logf("%s: %v", l.Spec, err)
			}
		}()
	}
}

// relay copies both ways between host and a new channel to guest until both
// sides are done, passing each side's end of stream on as a half-close, as
// HTTP clients and WebSocket closes expect.
func relay(ctx context.Context, host net.Conn, guest string, conn func(context.Context) (Dialer, error)) error {
	defer host.Close()
	cctx, cancel := context.WithTimeout(ctx, ConnWait)
	d, err := conn(cctx)
	cancel()
	if err != nil {
		return err
	}
	g, err := d.Dial("tcp", guest)
	if err != nil {
		return err
	}
	defer g.Close()
	stop := context.AfterFunc(ctx, func() { g.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		copyHalf(g, host)
		close(done)
	}()
	copyHalf(host, g)
	<-done
	return nil
}

// copyHalf copies src to dst, then closes dst for writing (or whole, when it
// cannot half-close).
func copyHalf(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	io.CopyBuffer(dst, src, buf)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}

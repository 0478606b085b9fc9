package sshmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// openTimeout bounds the wait for a client's frameOpen: a client that
// connects and says nothing does not hold a goroutine for long.
const openTimeout = 5 * time.Second

// ConnWait bounds how long an open waits for the held connection while it is
// being made again; then the client is refused and makes its own.
const ConnWait = 2 * time.Second

// pendingEvery is how often a client waiting for its session is told that
// the daemon is still at it.
const pendingEvery = time.Second

// Conn is a connection sessions are opened on; *ssh.Client is one.
type Conn interface {
	OpenChannel(name string, data []byte) (ssh.Channel, <-chan *ssh.Request, error)
	RemoteAddr() net.Addr
}

// Server serves sessions on the held connection to the owner over a unix
// socket.
type Server struct {
	// HostKey is the sandbox's pinned host key, which every connection was
	// checked against; clients check it against their own pin.
	HostKey ssh.PublicKey
	// Lease lends a connection for one session, waiting up to the
	// context's end for the held one; spare asks for another (Held.Lease).
	Lease func(ctx context.Context, spare bool) (Conn, func(), error)
	// Logf receives one line per refused client; nil discards.
	Logf func(format string, args ...any)
}

// Serve accepts connections on l until it is closed, and returns once every
// session it serves has ended. Clients of another uid than this process's
// are refused before a byte of theirs is read.
func (s *Server) Serve(l *net.UnixListener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// serve runs one client's session.
func (s *Server) serve(c *net.UnixConn) {
	out := &frameWriter{w: c}
	if err := checkPeer(c); err != nil {
		s.logf("refused a client: %v", err)
		out.write(frameRefused, []byte("not the sandbox's owner"))
		c.Close()
		return
	}
	in := bufio.NewReaderSize(c, maxChunk+5)
	stop := s.tellPending(out)
	ch, reqs, addr, release, err := s.open(c, in)
	stop()
	if err != nil {
		msg := err.Error()
		out.write(frameRefused, []byte(msg[:min(len(msg), maxText)]))
		c.Close()
		return
	}
	defer release()
	if err := out.write(frameOpened, encodeOpened(addr, s.HostKey.Marshal())); err != nil {
		ch.Close()
		c.Close()
		return
	}
	newRelay(c, in, out, ch, reqs).run()
}

// open reads the client's frameOpen and opens a session channel for it on a
// leased connection; a connection that refuses the channel (a server's
// session limit) is replaced by a spare one.
func (s *Server) open(c *net.UnixConn, in *bufio.Reader) (ssh.Channel, <-chan *ssh.Request, string, func(), error) {
	c.SetReadDeadline(time.Now().Add(openTimeout))
	t, p, err := readFrame(in)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("no open request: %w", err)
	}
	if t != frameOpen || len(p) != 1 || p[0] != protocolVersion {
		return nil, nil, "", nil, fmt.Errorf("%w: expected an open request of version %d", ErrProtocol, protocolVersion)
	}
	c.SetReadDeadline(time.Time{})
	conn, release, err := s.lease(false)
	if err != nil {
		return nil, nil, "", nil, err
	}
	ch, reqs, err := conn.OpenChannel("session", nil)
	var refused *ssh.OpenChannelError
	if errors.As(err, &refused) {
		release()
		if conn, release, err = s.lease(true); err != nil {
			return nil, nil, "", nil, err
		}
		ch, reqs, err = conn.OpenChannel("session", nil)
	}
	if err != nil {
		release()
		return nil, nil, "", nil, fmt.Errorf("cannot open a session: %w", err)
	}
	return ch, reqs, conn.RemoteAddr().String(), release, nil
}

func (s *Server) lease(spare bool) (Conn, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), ConnWait)
	defer cancel()
	return s.Lease(ctx, spare)
}

// tellPending sends framePending every pendingEvery until stop returns.
func (s *Server) tellPending(out *frameWriter) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(pendingEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				out.write(framePending)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-ended }
}

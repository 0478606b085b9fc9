package sshmux

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/ownersock"
)

// openReplyTimeout bounds the wait for each word of the daemon's answer to
// an open: it waits up to ConnWait for its connection and says that it is
// still at it every pendingEvery while it makes a spare one, so a daemon
// that says nothing for longer is hung (stopped, or swapping), and the
// client connects on its own.
const openReplyTimeout = ConnWait + 3*time.Second

// UnavailableError means the daemon serves no session now: no socket, a
// stale one (the daemon was killed), a daemon of another user, no answer, or
// a refusal (its connection is down). The caller connects on its own.
type UnavailableError struct {
	Path string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("no session through the host daemon's socket %q: %v", e.Path, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// RefusedError is the daemon's reason for not opening a session.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "the host daemon refused: " + e.Reason }

// ErrOtherPin means the daemon's connection was checked against another host
// key than the caller's pin (the sandbox's key was replaced since): its
// sessions must not be used.
var ErrOtherPin = errors.New("the host daemon pinned another host key")

// Dial opens a session channel through the daemon's socket at path and
// returns a client whose NewSession uses it, and opens each later session
// through the socket again. The daemon's connection must have been checked
// against hostKey, the caller's own pin. It is an *ssh.Client, so
// sshconn.Exec and sshconn.Attach run over it as over a connection of their
// own. Errors are *UnavailableError.
func Dial(ctx context.Context, path string, hostKey ssh.PublicKey) (*ssh.Client, error) {
	if hostKey == nil {
		return nil, &UnavailableError{Path: path, Err: errors.New("no pinned host key to check the daemon's against")}
	}
	c := &clientConn{path: path, pin: hostKey.Marshal(), open: map[*channel]bool{}, closed: make(chan struct{})}
	first, err := c.openChannel(ctx)
	if err != nil {
		return nil, &UnavailableError{Path: path, Err: err}
	}
	c.addr, c.first = first.addr, first
	chans := make(chan ssh.NewChannel)
	close(chans)
	reqs := make(chan *ssh.Request)
	close(reqs)
	return ssh.NewClient(c, chans, reqs), nil
}

// clientConn is the ssh.Conn behind Dial's client: each channel is a socket
// connection of its own.
type clientConn struct {
	path   string
	pin    []byte // the caller's pinned host key, SSH wire format
	addr   net.Addr
	mu     sync.Mutex
	first  *channel // opened by Dial, for the first NewSession
	open   map[*channel]bool
	closed chan struct{}
	once   sync.Once
}

// sandboxAddr is the sandbox's address as the daemon names it, for errors.
type sandboxAddr string

func (a sandboxAddr) Network() string { return "tcp" }
func (a sandboxAddr) String() string  { return string(a) }

func (c *clientConn) User() string          { return "" }
func (c *clientConn) SessionID() []byte     { return nil }
func (c *clientConn) ClientVersion() []byte { return nil }
func (c *clientConn) ServerVersion() []byte { return nil }
func (c *clientConn) RemoteAddr() net.Addr  { return c.addr }
func (c *clientConn) LocalAddr() net.Addr   { return &net.UnixAddr{Name: c.path, Net: "unix"} }

// SendRequest refuses global requests: they serve port forwarding, which
// does not go through the daemon.
func (c *clientConn) SendRequest(string, bool, []byte) (bool, []byte, error) {
	return false, nil, errors.New("sshmux: global requests do not go through the host daemon")
}

func (c *clientConn) OpenChannel(name string, _ []byte) (ssh.Channel, <-chan *ssh.Request, error) {
	if name != "session" {
		return nil, nil, &ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "only sessions go through the host daemon"}
	}
	c.mu.Lock()
	ch := c.first
	c.first = nil
	c.mu.Unlock()
	if ch == nil {
		var err error
		if ch, err = c.openChannel(context.Background()); err != nil {
			return nil, nil, err
		}
	}
	select {
	case <-c.closed:
		ch.Close()
		return nil, nil, net.ErrClosed
	default:
	}
	return ch, ch.reqs, nil
}

// Close ends every session, as closing an SSH connection does.
func (c *clientConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		defer c.mu.Unlock()
		for ch := range c.open {
			ch.Close()
		}
	})
	return nil
}

func (c *clientConn) Wait() error {
	<-c.closed
	return nil
}

// channel is one session through the socket, an ssh.Channel.
type channel struct {
	sock           *net.UnixConn
	in             *bufio.Reader
	out            *frameWriter
	addr           net.Addr
	stdout, stderr *buffer
	stdin          *credit
	reqs           chan *ssh.Request
	reqMu          sync.Mutex // one request that wants a reply at a time
	waiting        atomic.Int32
	replies        chan bool
	done           chan struct{}
	closeOnce      sync.Once
}

// openChannel connects to the socket and asks for a session.
func (c *clientConn) openChannel(ctx context.Context) (*channel, error) {
	sock, err := ownersock.Dial(ctx, c.path)
	if err != nil {
		return nil, err
	}
	limit, _ := ctx.Deadline()
	sock.SetDeadline(earliest(time.Now().Add(openReplyTimeout), limit))
	ch := &channel{sock: sock, in: bufio.NewReaderSize(sock, maxChunk+5), out: &frameWriter{w: sock},
		stdin: newCredit(window), reqs: make(chan *ssh.Request, 4), replies: make(chan bool, 1), done: make(chan struct{})}
	addr, err := ch.handshake(limit, c.pin)
	if err != nil {
		sock.Close()
		return nil, err
	}
	sock.SetDeadline(time.Time{})
	ch.addr = sandboxAddr(addr)
	ch.stdout = newBuffer(func(n int) { ch.out.write(frameCredit, encodeCredit(streamData, uint32(n))) })
	ch.stderr = newBuffer(func(n int) { ch.out.write(frameCredit, encodeCredit(streamStderr, uint32(n))) })
	c.mu.Lock()
	c.open[ch] = true
	c.mu.Unlock()
	go func() {
		ch.read()
		c.mu.Lock()
		delete(c.open, ch)
		c.mu.Unlock()
	}()
	return ch, nil
}

// handshake asks for a session, and checks that the daemon's connection was
// pinned to pin; each framePending gives the daemon openReplyTimeout more, up
// to the caller's deadline.
func (ch *channel) handshake(limit time.Time, pin []byte) (string, error) {
	if err := ch.out.write(frameOpen, []byte{protocolVersion}); err != nil {
		return "", err
	}
	for {
		t, p, err := readFrame(ch.in)
		switch {
		case err != nil:
			return "", err
		case t == frameOpened:
			addr, key, err := decodeOpened(p)
			if err == nil && !bytes.Equal(key, pin) {
				err = ErrOtherPin
			}
			return addr, err
		case t == frameRefused:
			return "", &RefusedError{Reason: string(p)}
		case t != framePending:
			return "", protocolErrorf("unexpected frame %q in answer to an open", t)
		}
		ch.sock.SetDeadline(earliest(time.Now().Add(openReplyTimeout), limit))
	}
}

func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// read dispatches the daemon's frames until the session ends; the socket
// ending without frameClose ends it the same way, without an exit status,
// which the session reports as a broken connection.
func (ch *channel) read() {
	defer func() {
		ch.stdout.end()
		ch.stderr.end()
		ch.stdin.close()
		close(ch.reqs)
		close(ch.done)
		ch.sock.Close()
	}()
	for {
		t, p, err := readFrame(ch.in)
		if err != nil || !ch.dispatch(t, p) {
			return
		}
	}
}

// dispatch handles one frame; false ends the session.
func (ch *channel) dispatch(t byte, p []byte) bool {
	switch t {
	case frameData:
		return ch.stdout.put(p)
	case frameStderr:
		return ch.stderr.put(p)
	case frameEOF:
		ch.stdout.end()
		ch.stderr.end()
		return true
	case frameCredit:
		stream, n, err := decodeCredit(p)
		return err == nil && stream == streamData && ch.stdin.add(n)
	case frameRequest:
		q, err := decodeRequest(p)
		if err != nil || q.wantReply || !validExit(q.name, q.payload) {
			return false
		}
		ch.reqs <- &ssh.Request{Type: q.name, Payload: q.payload}
		return true
	case frameReply:
		ok, err := decodeBool(p)
		if err != nil || ch.waiting.Add(-1) < 0 {
			return false // a reply to nothing
		}
		ch.replies <- ok
		return true
	}
	return false // frameClose, or a frame the daemon never sends
}

func (ch *channel) Read(p []byte) (int, error) { return ch.stdout.Read(p) }

func (ch *channel) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k, ok := ch.stdin.take(min(len(p), maxChunk))
		if !ok {
			return n, io.EOF
		}
		if err := ch.out.write(frameData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (ch *channel) CloseWrite() error { return ch.out.write(frameEOF) }

// Close ends the session: the daemon closes the SSH channel.
func (ch *channel) Close() error {
	ch.closeOnce.Do(func() {
		ch.out.write(frameClose)
		ch.sock.Close()
	})
	return nil
}

func (ch *channel) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	b, err := request{name: name, wantReply: wantReply, payload: payload}.encode()
	if err != nil {
		return false, err
	}
	if !wantReply {
		if err := ch.out.write(frameRequest, b); err != nil {
			return false, io.EOF
		}
		return false, nil
	}
	ch.reqMu.Lock()
	defer ch.reqMu.Unlock()
	ch.waiting.Add(1)
	if err := ch.out.write(frameRequest, b); err != nil {
		return false, io.EOF
	}
	select {
	case ok := <-ch.replies:
		return ok, nil
	case <-ch.done:
		return false, io.EOF
	}
}

// Stderr reads the remote stderr; a session never writes to it.
func (ch *channel) Stderr() io.ReadWriter { return stderrStream{ch.stderr} }

type stderrStream struct{ *buffer }

func (stderrStream) Write([]byte) (int, error) {
	return 0, errors.New("sshmux: a session does not write to the remote stderr")
}

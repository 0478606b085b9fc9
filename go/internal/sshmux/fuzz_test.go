package sshmux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// seedFrames are well-formed sessions in both directions.
func seedFrames() [][]byte {
	req, _ := request{name: "exec", wantReply: true, payload: []byte("\x00\x00\x00\x04true")}.encode()
	sig, _ := request{name: "signal", payload: []byte("\x00\x00\x00\x04TERM")}.encode()
	st, _ := request{name: "exit-status", payload: []byte{0, 0, 0, 3}}.encode()
	var a, b []byte
	a = appendFrame(a, frameRequest, req)
	a = appendFrame(a, frameData, []byte("input"))
	a = appendFrame(a, frameCredit, encodeCredit(streamStderr, 100))
	a = appendFrame(a, frameRequest, sig)
	a = appendFrame(a, frameEOF)
	a = appendFrame(a, frameClose)
	b = appendFrame(b, frameOpened, encodeOpened("127.0.0.1:2222", []byte("\x00\x00\x00\x0bssh-ed25519")))
	b = appendFrame(b, frameReply, []byte{1})
	b = appendFrame(b, frameData, []byte("out"))
	b = appendFrame(b, frameStderr, []byte("err"))
	b = appendFrame(b, frameRequest, st)
	b = appendFrame(b, frameEOF)
	b = appendFrame(b, frameClose)
	return [][]byte{a, b, {frameData, 0xff, 0xff, 0xff, 0xff}, {frameRequest, 0, 0, 0, 2, 1, 200}}
}

// FuzzFrames: any bytes either decode into frames within their bounds, whose
// payloads decode and encode back to the same bytes, or give an error; no
// panic, and nothing allocated past a frame's bound.
func FuzzFrames(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			typ, p, err := readFrame(r)
			if err != nil {
				return
			}
			if len(p) > maxPayload(typ) {
				t.Fatalf("frame %q of %d bytes passed its bound %d", typ, len(p), maxPayload(typ))
			}
			switch typ {
			case frameRequest:
				if q, err := decodeRequest(p); err == nil {
					b, err := q.encode()
					if err != nil || !bytes.Equal(b, p) {
						t.Fatalf("request %q does not encode back: %q, %v", p, b, err)
					}
				}
			case frameCredit:
				if s, n, err := decodeCredit(p); err == nil && !bytes.Equal(encodeCredit(s, n), p) {
					t.Fatalf("credit %q does not encode back", p)
				}
			case frameOpened:
				if addr, key, err := decodeOpened(p); err == nil && !bytes.Equal(encodeOpened(addr, key), p) {
					t.Fatalf("open answer %q does not encode back", p)
				}
			}
		}
	})
}

// FuzzDaemon feeds any bytes to the daemon's side of a session as a local
// client would send them, over a real socket pair, with a channel that
// accepts everything: the daemon never panics, never hangs, and passes on
// only the requests a session needs.
func FuzzDaemon(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, daemon := socketPair(t)
		ch := newTestChannel()
		out := &frameWriter{w: daemon}
		done := make(chan struct{})
		go func() {
			newRelay(daemon, bufio.NewReader(daemon), out, ch, ch.reqs).run()
			close(done)
		}()
		sendAndLeave(t, client, data, done)
		for _, name := range ch.requests {
			if !clientRequests[name] {
				t.Fatalf("request %q was passed on", name)
			}
		}
	})
}

// FuzzClient feeds any bytes to the client's side of a session as the daemon
// would send them: the client never panics and its session ends.
func FuzzClient(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, daemon := socketPair(t)
		ch := &channel{sock: client, in: bufio.NewReader(client), out: &frameWriter{w: client},
			stdin: newCredit(window), reqs: make(chan *ssh.Request, 4), replies: make(chan bool, 1), done: make(chan struct{})}
		ch.stdout = newBuffer(func(int) {})
		ch.stderr = newBuffer(func(int) {})
		go io.Copy(io.Discard, ch.stdout)
		go io.Copy(io.Discard, ch.stderr)
		go func() {
			for req := range ch.reqs {
				if req.Type == "exit-status" && len(req.Payload) != 4 {
					t.Errorf("exit-status of %d bytes passed on", len(req.Payload))
				}
			}
		}()
		go ch.read()
		sendAndLeave(t, daemon, data, ch.done)
	})
}

// sendAndLeave writes data from peer, closes it, and waits until the other
// side's session has ended.
func sendAndLeave(t *testing.T, peer *net.UnixConn, data []byte, ended <-chan struct{}) {
	t.Helper()
	go io.Copy(io.Discard, peer)
	peer.Write(data)
	peer.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after its peer left")
	}
}

func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// testChannel is an SSH channel whose remote end accepts every request and
// swallows stdin; it closes when the relay closes it.
type testChannel struct {
	reqs     chan *ssh.Request
	closed   chan struct{}
	once     sync.Once
	requests []string
}

func newTestChannel() *testChannel {
	return &testChannel{reqs: make(chan *ssh.Request), closed: make(chan struct{})}
}

func (c *testChannel) Read([]byte) (int, error) { <-c.closed; return 0, io.EOF }
func (c *testChannel) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.EOF
	default:
		return len(p), nil
	}
}
func (c *testChannel) CloseWrite() error { return nil }
func (c *testChannel) Close() error {
	c.once.Do(func() { close(c.closed); close(c.reqs) })
	return nil
}
func (c *testChannel) SendRequest(name string, _ bool, payload []byte) (bool, error) {
	c.requests = append(c.requests, name)
	if name == "exit-status" && len(payload) >= 4 {
		binary.BigEndian.Uint32(payload)
	}
	return true, nil
}
func (c *testChannel) Stderr() io.ReadWriter { return c }

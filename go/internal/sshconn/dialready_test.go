package sshconn_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
)

// forwarder imitates qemu's port forward while the guest boots: it accepts
// at once, holds connections made before the guest listens without a byte,
// and forwards those made after.
type forwarder struct {
	l         net.Listener
	listening atomic.Bool
	mu        sync.Mutex
	held      []net.Conn
	closed    atomic.Int32 // held connections the client closed
}

func newForwarder(t *testing.T, to string) *forwarder {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !f.listening.Load() {
				f.mu.Lock()
				f.held = append(f.held, c)
				f.mu.Unlock()
				go func() {
					io.Copy(io.Discard, c) // ends when the client closes
					f.closed.Add(1)
				}()
				continue
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return f
}

// An announcement cancels the attempts made before sshd listened and
// connects at once; the connection returned is the caller's to use.
func TestDialReadyAfterAnnouncement(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	fw := newForwarder(t, srv.Addr)
	target := srv.Target()
	target.Addr = fw.l.Addr().String()
	hint := make(chan struct{}, 1)
	go func() {
		for {
			fw.mu.Lock()
			n := len(fw.held)
			fw.mu.Unlock()
			if n >= 2 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		fw.listening.Store(true)
		hint <- struct{}{}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := sshconn.DialReady(ctx, target, nil, hint)
	if err != nil {
		t.Fatalf("DialReady: %v", err)
	}
	defer c.Close()
	if code, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: []string{"true"}}); err != nil || code != 0 {
		t.Fatalf("exec on the returned connection = %d, %v", code, err)
	}
	fw.mu.Lock()
	held := len(fw.held)
	fw.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); int(fw.closed.Load()) < held; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d attempts made before sshd listened are still open", held-int(fw.closed.Load()), held)
		}
	}
}

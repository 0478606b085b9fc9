package proxy

// How the guest's connections reach the proxy.
//
// qemu's user network forwards each guest connection to GuestAddress to a
// program it starts for that connection (guestfwd=…-cmd:), with the
// connection on the program's stdin. A chardev target (guestfwd=…-tcp: or
// -unix:) would carry one connection at a time, and a TCP listener on the
// host's loopback would let every local user ask for the key. So the
// program is `keystone agent proxy-relay SOCKET`: it hands its stdin to the
// host daemon over the sandbox's unix socket (state/proxy.sock, in the
// sandbox's 0700 directory, checked by peer uid) with SCM_RIGHTS, and exits.
// The daemon then talks to qemu's end directly: one short process per
// connection, no copy loop.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/ownersock"
)

// Guest side of the forward: the guest's address of the proxy. 10.0.2.100
// is inside qemu's user network (10.0.2.0/24) and used by nothing else.
const (
	GuestIP      = "10.0.2.100"
	GuestPort    = 3128
	GuestAddress = "10.0.2.100:3128"
)

// Listen creates the daemon's unix socket at path (replacing a stale socket,
// never another kind of file), private to this user.
func Listen(path string) (*FDListener, error) {
	l, err := ownersock.Listen(path)
	if err != nil {
		return nil, err
	}
	fl := &FDListener{l: l, path: path, conns: make(chan net.Conn), done: make(chan struct{})}
	go fl.loop()
	return fl, nil
}

// FDListener accepts the guest's connections handed over by proxy-relay.
type FDListener struct {
	l     *net.UnixListener
	path  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// handoffTimeout bounds how long a relay may take to hand its descriptor over.
const handoffTimeout = 5 * time.Second

func (fl *FDListener) loop() {
	for {
		c, err := fl.l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: try again
			continue
		}
		go fl.receive(c)
	}
}

// receive takes one descriptor from a relay of this user's.
func (fl *FDListener) receive(c *net.UnixConn) {
	defer c.Close()
	if ownersock.CheckPeer(c) != nil {
		return
	}
	c.SetDeadline(time.Now().Add(handoffTimeout))
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil || n != 1 {
		return
	}
	fds := parseRights(oob[:oobn])
	if len(fds) != 1 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return
	}
	f := os.NewFile(uintptr(fds[0]), "guest")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	select {
	case fl.conns <- conn:
	case <-fl.done:
		conn.Close()
	}
}

func parseRights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if r, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

// Accept implements net.Listener.
func (fl *FDListener) Accept() (net.Conn, error) {
	select {
	case c := <-fl.conns:
		return c, nil
	case <-fl.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and removes the socket.
func (fl *FDListener) Close() error {
	var err error
	fl.once.Do(func() {
		close(fl.done)
		err = fl.l.Close()
		os.Remove(fl.path)
	})
	return err
}

// Addr implements net.Listener.
func (fl *FDListener) Addr() net.Addr { return fl.l.Addr() }

// Relay hands conn's descriptor (the relay's stdin, qemu's end of one guest
// connection) to the daemon listening at socketPath.
func Relay(socketPath string, conn *os.File) error {
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	c, err := ownersock.Dial(ctx, socketPath)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(handoffTimeout))
	_, _, err = c.WriteMsgUnix([]byte{'c'}, syscall.UnixRights(int(conn.Fd())), nil)
	return err
}

// Unavailable is what a relay answers when the daemon is not there: a
// complete HTTP response an agent can read.
func Unavailable(sandbox string) string {
	body := "keystone: the host proxy of this sandbox is not running; on the host, `keystone agent status " + sandbox + "` shows why and `keystone agent start` restarts it\n"
	return fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

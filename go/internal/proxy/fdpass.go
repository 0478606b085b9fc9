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
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Guest side of the forward: the guest's address of the proxy. 10.0.2.100
// is inside qemu's user network (10.0.2.0/24) and used by nothing else.
const (
	GuestIP      = "10.0.2.100"
	GuestPort    = 3128
	GuestAddress = "10.0.2.100:3128"
)

// maxSockPath is what fits sockaddr_un's sun_path with its NUL.
const maxSockPath = 107

// Listen creates the daemon's unix socket at path (replacing a stale socket,
// never another kind of file), private to this user.
func Listen(path string) (*FDListener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	addr, done, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	// The directory (state/, 0700) is what keeps others out; the mode says so too.
	if err := os.Chmod(addr, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	fl := &FDListener{l: l, path: path, conns: make(chan net.Conn), done: make(chan struct{})}
	go fl.loop()
	return fl, nil
}

// shortPath returns a name for path that fits sun_path: path itself, or
// /proc/self/fd/N/<base> through an open descriptor of its directory.
func shortPath(path string) (string, func(), error) {
	if len(path) <= maxSockPath {
		return path, func() {}, nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	short := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path))
	if len(short) > maxSockPath {
		d.Close()
		return "", nil, fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return short, func() { d.Close() }, nil
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
	if !sameUser(c) {
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

// sameUser checks the peer's uid: the socket's directory already keeps other
// users out; this keeps them out of a socket in a directory they can enter.
func sameUser(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Getuid()
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
	addr, done, err := shortPath(socketPath)
	if err != nil {
		return err
	}
	defer done()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
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

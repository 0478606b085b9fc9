package sshmux_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
)

// terminal is a pty pair: the test types into and reads from the controlling
// side, Attach gets the other as its terminal. The peer is opened with
// TIOCGPTPEER, so no /dev/pts path is involved.
type terminal struct {
	ctl, peer *os.File
	mu        sync.Mutex
	screen    bytes.Buffer
}

func openTerminal(t *testing.T, rows, cols uint16) *terminal {
	t.Helper()
	ctl, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(ctl, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	peer, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(ctl), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if errno != 0 {
		t.Fatalf("TIOCGPTPEER: %v", errno)
	}
	term := &terminal{ctl: os.NewFile(uintptr(ctl), "ptmx"), peer: os.NewFile(peer, "pty")}
	t.Cleanup(func() { term.ctl.Close(); term.peer.Close() })
	term.resize(t, rows, cols)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := term.ctl.Read(buf)
			term.mu.Lock()
			term.screen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return term
}

func (term *terminal) resize(t *testing.T, rows, cols uint16) {
	if err := unix.IoctlSetWinsize(int(term.peer.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

// await waits for want on the screen and returns the screen after it.
func (term *terminal) await(t *testing.T, want string) bool {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		term.mu.Lock()
		s := term.screen.String()
		if i := strings.Index(s, want); i >= 0 {
			term.screen.Next(i + len(want))
			term.mu.Unlock()
			return true
		}
		term.mu.Unlock()
	}
	return false
}

// attach through the daemon with a real terminal: a PTY of the terminal's
// size, window changes, raw mode restored, the shell's status.
func TestAttachWithATerminal(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		if !srv.CanPTY() {
			t.Skipf("%s as uid %d gives no PTY", srv.Kind, os.Geteuid())
		}
		d := daemon(t, srv.Target())
		term := openTerminal(t, 30, 100)
		before, _ := unix.IoctlGetTermios(int(term.peer.Fd()), unix.TCGETS)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := d.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan int, 1)
		go func() {
			code, err := sshconn.Attach(ctx, c, sshconn.Session{Dir: srv.Dir, Term: "vt100", Stdin: term.peer, Stdout: term.peer, Stderr: term.peer})
			if err != nil {
				t.Errorf("Attach: %v", err)
			}
			done <- code
		}()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			tio, _ := unix.IoctlGetTermios(int(term.peer.Fd()), unix.TCGETS)
			if tio.Lflag&unix.ICANON == 0 {
				break // raw: Attach has the terminal
			}
			if time.Now().After(deadline) {
				t.Fatal("the terminal was not made raw")
			}
		}
		term.ctl.WriteString("echo T=$TERM; [ -t 0 ] && stty size\r")
		if !term.await(t, "T=vt100") || !term.await(t, "30 100") {
			t.Fatalf("no vt100 terminal of 30x100; screen: %q", term.screen.String())
		}
		term.resize(t, 40, 120)
		syscall.Kill(os.Getpid(), syscall.SIGWINCH)
		resized := false
		for i := 0; i < 20 && !resized; i++ {
			term.ctl.WriteString("stty size\r")
			resized = term.await(t, "40 120")
		}
		if !resized {
			t.Fatalf("the window change did not arrive; screen: %q", term.screen.String())
		}
		term.ctl.WriteString("exit 7\r")
		select {
		case code := <-done:
			if code != 7 {
				t.Errorf("Attach = %d; want 7", code)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Attach did not return after exit")
		}
		if after, _ := unix.IoctlGetTermios(int(term.peer.Fd()), unix.TCGETS); *after != *before {
			t.Errorf("the terminal was not restored")
		}
	})
}

package sshconn_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/ptytest"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// screen collects everything written to the terminal.
type screen struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// await waits until the screen shows want after position from, and returns
// the position after it.
func (s *screen) await(t *testing.T, from int, want string, within time.Duration) (int, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		out := s.String()
		if i := strings.Index(out[from:], want); i >= 0 {
			return from + i + len(want), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return from, false
}

type attachResult struct {
	code int
	err  error
}

func TestAttachTerminal(t *testing.T) {
	dir := t.TempDir()
	eachServer(t, func(t *testing.T, srv *sshdtest.Server, c *ssh.Client) {
		if !srv.CanPTY() {
			t.Skipf("%s running as uid %d cannot give a session a PTY", srv.Kind, os.Geteuid())
		}
		p := ptytest.Open(t)
		p.Resize(t, 30, 100)
		before := p.Termios(t)
		var scr screen
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := p.Master.Read(buf)
				scr.Write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done := make(chan attachResult, 1)
		go func() {
			code, err := sshconn.Attach(ctx, c, sshconn.Session{Dir: dir, Term: "vt100", Stdin: p.Slave, Stdout: p.Slave, Stderr: p.Slave})
			done <- attachResult{code, err}
		}()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf(format+"\nscreen:\n%q", append(args, scr.String())...)
		}
		typeLine := func(line string) {
			t.Helper()
			if _, err := p.Master.WriteString(line + "\r"); err != nil {
				fail("typing %q: %v", line, err)
			}
		}

		// Type only once the terminal is raw, as a person would after the
		// prompt: earlier keys would be echoed and translated locally.
		for start := time.Now(); p.Termios(t).Lflag&(unix.ECHO|unix.ICANON) != 0; {
			if time.Since(start) > 20*time.Second {
				fail("the local terminal was not put in raw mode")
			}
			time.Sleep(10 * time.Millisecond)
		}
		typeLine(`echo "T=$TERM D=$(pwd)"; stty size`)
		pos, ok := scr.await(t, 0, "T=vt100 D="+dir, 20*time.Second)
		if !ok {
			fail("the shell did not report TERM and the directory")
		}
		if pos, ok = scr.await(t, pos, "30 100", 5*time.Second); !ok {
			fail("the remote terminal is not 30x100")
		}

		p.Resize(t, 40, 120)
		syscall.Kill(os.Getpid(), syscall.SIGWINCH) // what the kernel sends the terminal's foreground process
		resized := false
		for i := 0; i < 10 && !resized; i++ {
			typeLine("stty size")
			pos, resized = scr.await(t, pos, "40 120", time.Second)
		}
		if !resized {
			fail("the window change did not reach the remote terminal")
		}

		typeLine("echo hi; exit 3")
		var r attachResult
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			fail("Attach did not return after the shell exited")
		}
		if r.err != nil || r.code != 3 {
			fail("Attach = %d, %v; want 3", r.code, r.err)
		}
		if _, ok := scr.await(t, pos, "hi\r\n", time.Second); !ok {
			fail("the shell's output did not reach the terminal")
		}
		if after := p.Termios(t); after != before {
			t.Errorf("terminal not restored:\nbefore %+v\nafter  %+v", before, after)
		}
		// Attach's read of the terminal must have stopped: what is typed
		// now belongs to whoever reads the terminal next.
		p.Master.WriteString("after\n")
		buf := make([]byte, 16)
		p.Slave.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := p.Slave.Read(buf)
		if err != nil || string(buf[:n]) != "after\n" {
			t.Errorf("reading the terminal after Attach = %q, %v; want %q", buf[:n], err, "after\n")
		}
	})
}

func TestAttachWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	eachServer(t, func(t *testing.T, srv *sshdtest.Server, c *ssh.Client) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		go func() {
			w.WriteString("if [ -t 0 ]; then echo tty; fi; echo piped $((1+2)); pwd; exit 4\n")
			w.Close()
		}()
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code, err := sshconn.Attach(ctx, c, sshconn.Session{Dir: dir, Stdin: r, Stdout: &out, Stderr: &errb})
		if err != nil || code != 4 {
			t.Fatalf("Attach = %d, %v; want 4; stderr %q", code, err, errb.String())
		}
		// A login shell may print its profile's messages first; the
		// commands' output must come last and unmangled (no CR: no PTY).
		if want := "piped 3\n" + dir + "\n"; !strings.HasSuffix(out.String(), want) {
			t.Errorf("stdout = %q; want it to end with %q", out.String(), want)
		}
	})
}

func TestAttachNilStdin(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// No input: the shell reads EOF at once and exits 0.
		if code, err := sshconn.Attach(ctx, c, sshconn.Session{}); err != nil || code != 0 {
			t.Errorf("Attach with no stdin = %d, %v; want 0", code, err)
		}
	})
}

func TestAttachArgvAndSource(t *testing.T) {
	dir := t.TempDir()
	env := dir + "/env"
	if err := os.WriteFile(env, []byte("export FROM_FILE=sourced\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code, err := sshconn.Attach(ctx, c, sshconn.Session{Dir: dir, Source: env,
			Argv: []string{"sh", "-c", `echo "$FROM_FILE $(pwd) $1"; exit 5`, "sh", "it's"}, Stdout: &out})
		if err != nil || code != 5 {
			t.Fatalf("Attach = %d, %v; want the command's 5", code, err)
		}
		if want := "sourced " + dir + " it's\n"; out.String() != want {
			t.Errorf("stdout = %q; want %q", out.String(), want)
		}
	})
}

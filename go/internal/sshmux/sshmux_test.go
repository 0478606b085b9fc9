package sshmux_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"github.com/keystone-agent/keystone/internal/sshmux"
)

// Everything here runs against real servers (OpenSSH's sshd and dropbear, as
// the guests have them) through the real daemon service on a real socket.

var servers = []sshdtest.Kind{sshdtest.Dropbear, sshdtest.OpenSSH}

func eachServer(t *testing.T, f func(t *testing.T, srv *sshdtest.Server)) {
	for _, k := range servers {
		t.Run(string(k), func(t *testing.T) {
			srv := sshdtest.Start(t, k)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("%s log:\n%s", k, srv.Log())
				}
			})
			f(t, srv)
		})
	}
}

// logLines collects the daemon's log.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// testDaemon is a running held connection service.
type testDaemon struct {
	sock string
	pin  ssh.PublicKey
	logs *logLines
}

// dial is what sandbox.Connect does first.
func (d *testDaemon) dial(ctx context.Context) (*ssh.Client, error) {
	return sshmux.Dial(ctx, d.sock, d.pin)
}

// daemon runs the held connection service for target, as the host daemon
// does, and returns once it is ready.
func daemon(t *testing.T, target sshconn.Target) *testDaemon {
	t.Helper()
	return daemonAt(t, target, filepath.Join(t.TempDir(), "ssh.sock"))
}

// daemonAt is daemon with its socket at sock.
func daemonAt(t *testing.T, target sshconn.Target, sock string) *testDaemon {
	t.Helper()
	logs := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	svc := &sshmux.Service{Target: target, Socket: sock, FirstTimeout: 30 * time.Second, Logf: logs.logf}
	go func() {
		done <- svc.Run(ctx, hostd.VM{Gone: make(chan struct{}), Ready: func() { once.Do(func() { close(ready) }) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("the service ended before it was ready: %v", err)
	case <-time.After(40 * time.Second):
		cancel()
		t.Fatal("the service was not ready within 40s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the socket is left after the service ended: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	return &testDaemon{sock: sock, pin: target.HostKey, logs: logs}
}

type result struct {
	code           int
	err            error
	stdout, stderr string
}

// run executes cmd through the daemon's socket.
func run(t *testing.T, d *testDaemon, cmd sshconn.Command) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.dial(ctx)
	if err != nil {
		return result{code: sshconn.ExitTransport, err: err}
	}
	defer c.Close()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &errb
	}
	code, err := sshconn.Exec(ctx, c, cmd)
	return result{code, err, out.String(), errb.String()}
}

func TestExecThroughTheDaemon(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		d := daemon(t, srv.Target())
		for _, tc := range []struct {
			argv               []string
			code               int
			stdout, stderr     string
			stdin              string
			wantStdoutContains string
		}{
			{argv: []string{"true"}},
			{argv: []string{"sh", "-c", "exit 3"}, code: 3},
			{argv: []string{"sh", "-c", "echo out; echo err >&2; exit 42"}, code: 42, stdout: "out\n", stderr: "err\n"},
			{argv: []string{"sh", "-c", "kill -KILL $$"}, code: 128 + 9},
			{argv: []string{"sh", "-c", "kill -USR1 $$"}, code: 128 + 10},
			{argv: []string{"printf", "[%s]", "a b", "$HOME", "", "it's", "\n"}, stdout: "[a b][$HOME][][it's][\n]"},
			{argv: []string{"wc", "-l"}, stdin: "one\ntwo\n", wantStdoutContains: "2"},
			{argv: []string{"nonexistent-command-xyz"}, code: 127},
		} {
			r := run(t, d, sshconn.Command{Argv: tc.argv, Stdin: strings.NewReader(tc.stdin)})
			if r.err != nil || r.code != tc.code {
				t.Errorf("%q = %d, %v; want %d (stderr %q)", tc.argv, r.code, r.err, tc.code, r.stderr)
				continue
			}
			if tc.wantStdoutContains != "" {
				if !strings.Contains(r.stdout, tc.wantStdoutContains) {
					t.Errorf("%q: stdout %q; want it to contain %q", tc.argv, r.stdout, tc.wantStdoutContains)
				}
			} else if r.stdout != tc.stdout {
				t.Errorf("%q: stdout %q; want %q", tc.argv, r.stdout, tc.stdout)
			}
			if tc.code != 127 && r.stderr != tc.stderr {
				t.Errorf("%q: stderr %q; want %q", tc.argv, r.stderr, tc.stderr)
			}
		}
	})
}

// Several MiB in both directions at once: more than every window, so the
// flow control of every stream is exercised, with stderr flowing too.
func TestLargeStreams(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		d := daemon(t, srv.Target())
		in := make([]byte, 3<<20+17)
		rand.Read(in)
		r := run(t, d, sshconn.Command{Argv: []string{"sh", "-c", "tee /dev/stderr"}, Stdin: bytes.NewReader(in)})
		if r.err != nil || r.code != 0 {
			t.Fatalf("tee = %d, %v", r.code, r.err)
		}
		if r.stdout != string(in) || r.stderr != string(in) {
			t.Fatalf("got %d bytes on stdout, %d on stderr; want both to be the %d bytes of stdin", len(r.stdout), len(r.stderr), len(in))
		}
		// A command that stops reading early still reports its own status.
		r = run(t, d, sshconn.Command{Argv: []string{"head", "-c", "5"}, Stdin: bytes.NewReader(in)})
		if r.err != nil || r.code != 0 || r.stdout != string(in[:5]) {
			t.Fatalf("head -c 5 = %d, %v, %q", r.code, r.err, r.stdout)
		}
	})
}

// runConcurrently runs n commands at once through the daemon, the ith
// printing "n<i>" after a second and exiting with status i.
func runConcurrently(t *testing.T, d *testDaemon, n int) []result {
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(t, d, sshconn.Command{Argv: []string{"sh", "-c", `sleep 1; echo "$0"; exit "$1"`, fmt.Sprintf("n%d", i), fmt.Sprint(i)}})
		}()
	}
	wg.Wait()
	return results
}

// 50 commands at once through the daemon, each with its own output and
// status: on the held connection where its server allows (OpenSSH, up to its
// MaxSessions), on spare connections where not (dropbear 2022.83, see
// exclusiveSessions).
func TestFiftyConcurrentExecs(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		d := daemon(t, srv.Target())
		for i, r := range runConcurrently(t, d, 50) {
			if r.err != nil || r.code != i || r.stdout != fmt.Sprintf("n%d\n", i) {
				t.Errorf("exec %d = %d, %v, %q; want %d, %q", i, r.code, r.err, r.stdout, i, fmt.Sprintf("n%d\n", i))
			}
		}
	})
}

// The connection drops (a network hiccup, qemu's forwarder losing it): open
// sessions end with the transport status, and the daemon connects again by
// itself.
func TestReconnectsAfterTheConnectionDrops(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		px := startProxy(t, srv.Addr)
		target := srv.Target()
		target.Addr = px.addr()
		d := daemon(t, target)
		running := make(chan result, 1)
		started := filepath.Join(srv.Dir, "started")
		go func() {
			running <- run(t, d, sshconn.Command{Argv: []string{"sh", "-c", `: > "$0"; exec cat`, started}, Stdin: endless(t)})
		}()
		awaitFile(t, started)
		px.dropAll()
		select {
		case r := <-running:
			var te *sshconn.TransportError
			if r.code != sshconn.ExitTransport || !errors.As(r.err, &te) {
				t.Errorf("a session open when the connection dropped = %d, %v; want %d and a *TransportError", r.code, r.err, sshconn.ExitTransport)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a session open when the connection dropped did not end")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := run(t, d, sshconn.Command{Argv: []string{"echo", "back"}})
			if r.err == nil && r.code == 0 && r.stdout == "back\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no session after the connection dropped: %d, %v", r.code, r.err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(d.logs.String(), "connected to "+target.Addr+" again") {
			t.Errorf("the log does not say the connection was made again:\n%s", d.logs)
		}
	})
}

// A burst on a server of one session per connection needs spare
// connections; when some fail (dropbear's limit of unauthenticated
// connections, under load) the daemon makes them again, and every session
// still goes through it rather than falling back to a connection of its own.
func TestFailedSpareConnectionsAreMadeAgain(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	px := startProxy(t, srv.Addr)
	px.mu.Lock()
	var refused atomic.Int32
	px.refuse = func(n int) bool { // every other spare
		if n > 0 && n%2 == 1 {
			refused.Add(1)
			return true
		}
		return false
	}
	px.mu.Unlock()
	target := srv.Target()
	target.Addr = px.addr()
	d := daemon(t, target)
	for i, r := range runConcurrently(t, d, 8) {
		if r.err != nil || r.code != i || r.stdout != fmt.Sprintf("n%d\n", i) {
			t.Errorf("exec %d through the daemon = %d, %v, %q; want %d, %q", i, r.code, r.err, r.stdout, i, fmt.Sprintf("n%d\n", i))
		}
	}
	if refused.Load() == 0 {
		t.Error("no spare connection was dropped, so nothing was tried again")
	}
}

// proxy forwards loopback TCP connections to a server, and can cut them all.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	// refuse, when set, is asked about the nth connection (from 0): true
	// closes it unanswered, as dropbear does past its limit of
	// unauthenticated connections.
	refuse func(n int) bool
}

func startProxy(t *testing.T, to string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.dropAll() })
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refuse := p.refuse != nil && p.refuse(n)
			p.mu.Unlock()
			if refuse {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// endless is an input that never ends while the test runs.
func endless(t *testing.T) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); r.Close() })
	return r
}

// A cancelled exec sends SIGTERM to the remote command through the daemon,
// as over a connection of its own.
func TestSignalReachesTheCommand(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		if srv.Kind == sshdtest.OpenSSH && os.Geteuid() == 0 {
			t.Skip("OpenSSH refuses signal requests for root logins")
		}
		d := daemon(t, srv.Target())
		mark := filepath.Join(srv.Dir, "got-term")
		started := filepath.Join(srv.Dir, "started")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c, err := d.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan error, 1)
		go func() {
			_, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: []string{"sh", "-c",
				`trap 'echo term > "$0"; exit 0' TERM; : > "$1"; while :; do sleep 0.05; done`, mark, started}})
			done <- err
		}()
		awaitFile(t, started)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled exec: %v; want context.Canceled", err)
		}
		awaitFile(t, mark)
	})
}

func awaitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s did not appear", path)
}

// Sessions one after another: OpenSSH's share the held connection; an old
// dropbear's (the test guest's 2022.83) each get a connection of their own,
// as it closed a connection's second session before its exec was answered
// (docs/ssh.md).
func TestSessionsOneAfterAnother(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server) {
		px := startProxy(t, srv.Addr)
		var conns atomic.Int32
		px.mu.Lock()
		px.refuse = func(int) bool { conns.Add(1); return false }
		px.mu.Unlock()
		target := srv.Target()
		target.Addr = px.addr()
		d := daemon(t, target)
		const sessions = 3
		for i := range sessions {
			if r := run(t, d, sshconn.Command{Argv: []string{"true"}}); r.err != nil || r.code != 0 {
				t.Fatalf("exec %d = %d, %v", i, r.code, r.err)
			}
		}
		n := int(conns.Load())
		switch exclusive := oldDropbear(t, srv); {
		case exclusive && n < 1+sessions:
			t.Errorf("%d connections for %d sessions; want the held one and one for each session", n, sessions)
		case !exclusive && n != 1:
			t.Errorf("%d connections; want the held one alone", n)
		}
	})
}

// oldDropbear reports whether srv is a dropbear before 2024.86, from its
// identification line (a connection of the test's own, not through a proxy).
func oldDropbear(t *testing.T, srv *sshdtest.Server) bool {
	if srv.Kind != sshdtest.Dropbear {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshconn.DialBusy(ctx, srv.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var year, release int
	if _, err := fmt.Sscanf(string(c.ServerVersion()), "SSH-2.0-dropbear_%d.%d", &year, &release); err != nil {
		t.Fatalf("dropbear says %q", c.ServerVersion())
	}
	return release < 86
}

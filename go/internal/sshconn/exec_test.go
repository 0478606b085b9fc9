package sshconn_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"golang.org/x/crypto/ssh"
)

// servers are the SSH servers every behaviour is checked against: OpenSSH
// (a NixOS guest) and dropbear (the Debian test guest).
var servers = []sshdtest.Kind{sshdtest.OpenSSH, sshdtest.Dropbear}

// eachServer runs f against a fresh server of every kind, with a connected
// client.
func eachServer(t *testing.T, f func(t *testing.T, srv *sshdtest.Server, c *ssh.Client)) {
	for _, k := range servers {
		t.Run(string(k), func(t *testing.T) {
			srv := sshdtest.Start(t, k)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("%s log:\n%s", k, srv.Log())
				}
			})
			c := dial(t, srv.Target())
			f(t, srv, c)
		})
	}
}

func dial(t *testing.T, target sshconn.Target) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sshconn.Dial(ctx, target)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run executes cmd with a deadline and fails the test on an error.
func run(t *testing.T, c sshconn.SessionOpener, cmd sshconn.Command) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := sshconn.Exec(ctx, c, cmd)
	if err != nil {
		t.Fatalf("Exec(%q): %v", cmd.Argv, err)
	}
	return code
}

func TestExecExitCodes(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		for _, tc := range []struct {
			argv []string
			want int
		}{
			{[]string{"true"}, 0},
			{[]string{"false"}, 1},
			{[]string{"sh", "-c", "exit 42"}, 42},
			{[]string{"no-such-command-keystone"}, 127},
			{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
			{[]string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
		} {
			if got := run(t, c, sshconn.Command{Argv: tc.argv}); got != tc.want {
				t.Errorf("Exec(%q) = %d; want %d", tc.argv, got, tc.want)
			}
		}
	})
}

// TestServerHomeIsPrivate guards the machine running the tests: what a
// remote shell writes to $HOME (an interactive one writes its history on
// exit) must land in the test server's directory, never in the real home of
// root or the developer.
func TestServerHomeIsPrivate(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server, c *ssh.Client) {
		const probe = ".keystone-home-probe"
		if code := run(t, c, sshconn.Command{Argv: []string{"sh", "-c", `echo x > "$HOME/` + probe + `"`}}); code != 0 {
			t.Fatalf("writing to $HOME exited %d", code)
		}
		if _, err := os.Stat(filepath.Join(srv.Dir, probe)); err != nil {
			t.Errorf("a file written to the remote $HOME is not in the server's directory: %v", err)
		}
	})
}

// trickyArgs are arguments a remote shell would mangle if they were not
// quoted exactly.
var trickyArgs = []string{
	"a b", "'q'", "$HOME", "", `x\y`, "line1\nline2", `"dq"`, "`id`", "$(id)", "*", "~", "a;b", "a&&b",
	"-n", "it's", `'\''`, "\t", "ünï", "#c", "!x", "{a,b}", "a=b",
}

func TestExecArgvFidelity(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		// The brief's example first, then everything else.
		argv := append([]string{"printf", `%s\n`, "a b", "'q'", "$HOME", "", `x\y`}, trickyArgs...)
		var out bytes.Buffer
		if code := run(t, c, sshconn.Command{Argv: argv, Stdout: &out}); code != 0 {
			t.Fatalf("printf exited %d", code)
		}
		want := strings.Join(argv[2:], "\n") + "\n"
		if got := out.String(); got != want {
			t.Errorf("remote argv differs\ngot:  %q\nwant: %q", got, want)
		}
	})
}

func TestExecStdin(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		t.Run("all input arrives and EOF ends the command", func(t *testing.T) {
			in := bytes.Repeat([]byte("0123456789abcdef\n"), 64<<10) // 1 MiB
			var out bytes.Buffer
			if code := run(t, c, sshconn.Command{Argv: []string{"cat"}, Stdin: bytes.NewReader(in), Stdout: &out}); code != 0 {
				t.Fatalf("cat exited %d", code)
			}
			if !bytes.Equal(out.Bytes(), in) {
				t.Errorf("cat returned %d bytes; want the %d sent", out.Len(), len(in))
			}
		})
		t.Run("input is streamed, not buffered until EOF", func(t *testing.T) {
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				code, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: []string{"cat"}, Stdin: inR, Stdout: outW})
				if err == nil && code != 0 {
					err = fmt.Errorf("cat exited %d", code)
				}
				done <- err
				outW.Close()
			}()
			lines := bufio.NewReader(outR)
			for _, msg := range []string{"ping\n", "pong\n"} {
				io.WriteString(inW, msg)
				got, err := lines.ReadString('\n')
				if err != nil || got != msg {
					t.Fatalf("echo of %q = %q, %v", msg, got, err)
				}
			}
			inW.Close() // EOF must reach cat, or it never exits
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("cat did not exit after stdin was closed")
			}
		})
		t.Run("a command that reads no input still succeeds", func(t *testing.T) {
			in := bytes.NewReader(make([]byte, 8<<20))
			if code := run(t, c, sshconn.Command{Argv: []string{"true"}, Stdin: in}); code != 0 {
				t.Errorf("true exited %d", code)
			}
		})
	})
}

func TestExecStderrAndDir(t *testing.T) {
	// A directory whose name needs quoting; the server runs on this
	// machine, so the test can create it.
	dir := filepath.Join(t.TempDir(), "it's a dir $x")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		var out, errb bytes.Buffer
		code := run(t, c, sshconn.Command{
			Argv:   []string{"sh", "-c", `echo out; echo err >&2; pwd; echo "$A"`},
			Dir:    dir,
			Env:    map[string]string{"A": `v'a"l $ue`},
			Stdout: &out, Stderr: &errb,
		})
		if code != 0 {
			t.Fatalf("exited %d; stderr %q", code, errb.String())
		}
		if want := "out\n" + dir + "\n" + `v'a"l $ue` + "\n"; out.String() != want {
			t.Errorf("stdout = %q; want %q", out.String(), want)
		}
		if errb.String() != "err\n" {
			t.Errorf("stderr = %q; want %q", errb.String(), "err\n")
		}
		code = run(t, c, sshconn.Command{Argv: []string{"true"}, Dir: filepath.Join(dir, "missing"), Stderr: io.Discard})
		if code == 0 {
			t.Error("Exec in a missing directory succeeded; want the cd to fail")
		}
	})
}

func TestExecSource(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "it's env")
	if err := os.WriteFile(env, []byte("export FROM_FILE='sourced'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		var out bytes.Buffer
		run(t, c, sshconn.Command{Argv: []string{"sh", "-c", `echo "$FROM_FILE $A"`}, Source: env,
			Env: map[string]string{"A": "env"}, Stdout: &out})
		if out.String() != "sourced env\n" {
			t.Errorf("stdout = %q; want the sourced variable", out.String())
		}
		// A guest without the file runs the command all the same.
		out.Reset()
		if code := run(t, c, sshconn.Command{Argv: []string{"echo", "ran"}, Source: filepath.Join(dir, "missing"), Stdout: &out}); code != 0 || out.String() != "ran\n" {
			t.Errorf("missing source: exit %d, stdout %q", code, out.String())
		}
	})
}

func TestExecInvalidCommand(t *testing.T) {
	for _, cmd := range []sshconn.Command{
		{},
		{Argv: []string{"-l"}},
		{Argv: []string{"echo", "a\x00b"}},
		{Argv: []string{"true"}, Dir: "/a\x00"},
		{Argv: []string{"true"}, Env: map[string]string{"A B": "x"}},
		{Argv: []string{"true"}, Env: map[string]string{"1A": "x"}},
		{Argv: []string{"true"}, Source: "/a\x00"},
	} {
		// No connection is needed to refuse these: a nil opener would
		// panic if Exec got as far as opening a session.
		code, err := sshconn.Exec(context.Background(), nil, cmd)
		if err == nil || code != sshconn.ExitTransport {
			t.Errorf("Exec(%+v) = %d, %v; want an error and %d", cmd, code, err, sshconn.ExitTransport)
		}
		var te *sshconn.TransportError
		if errors.As(err, &te) {
			t.Errorf("Exec(%+v) error %v is a transport error; want an input error", cmd, err)
		}
	}
}

// endless is an input that never ends while the test runs. A remote `cat`
// reading it runs until its session goes away, and then exits because its
// input closes (a `sleep` would outlive the test: OpenSSH refuses signals
// for root logins and does not kill a command when its channel closes).
func endless(t *testing.T) io.Reader {
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	return r
}

func TestExecTransportFailure(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		started := make(chan struct{})
		var once sync.Once
		out := writerFunc(func(p []byte) (int, error) { once.Do(func() { close(started) }); return len(p), nil })
		go func() {
			code, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: []string{"sh", "-c", "echo started; exec cat"}, Stdin: endless(t), Stdout: out})
			done <- result{code, err}
		}()
		select { // wait for the command to run, not for a fixed time
		case <-started:
		case r := <-done:
			t.Fatalf("Exec ended before the connection broke: %d, %v", r.code, r.err)
		}
		c.Close() // the connection breaks while the command runs
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Exec did not return after the connection broke")
		}
		var te *sshconn.TransportError
		if r.code != sshconn.ExitTransport || !errors.As(r.err, &te) {
			t.Fatalf("Exec over a broken connection = %d, %v; want %d and a *TransportError", r.code, r.err, sshconn.ExitTransport)
		}
		t.Logf("error: %v", r.err)
		if _, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: []string{"true"}}); !errors.As(err, &te) {
			t.Errorf("Exec on a closed client: %v; want a *TransportError", err)
		}
	})
}

func TestExecContextCancel(t *testing.T) {
	eachServer(t, func(t *testing.T, _ *sshdtest.Server, c *ssh.Client) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		code, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: []string{"cat"}, Stdin: endless(t)})
		if !errors.Is(err, context.DeadlineExceeded) || code != sshconn.ExitTransport {
			t.Errorf("Exec past its deadline = %d, %v; want %d and context.DeadlineExceeded", code, err, sshconn.ExitTransport)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Exec took %v to notice its deadline", d)
		}
		// The connection is still usable for the next command.
		if code := run(t, c, sshconn.Command{Argv: []string{"true"}}); code != 0 {
			t.Errorf("true after a cancelled command exited %d", code)
		}
	})
}

// TestQuoteLocalShells checks Quote against the shells a guest may have,
// without SSH: each quoted word must read back as exactly the original.
func TestQuoteLocalShells(t *testing.T) {
	for _, sh := range [][]string{{"/bin/sh"}, {"dash"}, {"bash"}, {"busybox", "sh"}} {
		path, err := exec.LookPath(sh[0])
		if err != nil {
			t.Logf("skipping %s: %v", sh[0], err)
			continue
		}
		t.Run(strings.Join(sh, " "), func(t *testing.T) {
			line := `printf '%s\0'`
			for _, a := range trickyArgs {
				q, err := sshconn.Quote(a)
				if err != nil {
					t.Fatalf("Quote(%q): %v", a, err)
				}
				line += " " + q
			}
			out, err := exec.Command(path, append(sh[1:], "-c", line)...).Output()
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			if !slices.Equal(got, trickyArgs) {
				t.Errorf("round trip differs\ngot:  %q\nwant: %q", got, trickyArgs)
			}
		})
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

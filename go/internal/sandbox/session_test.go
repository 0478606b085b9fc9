package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// The held connection on a real VM: exec and attach go through the host
// daemon's socket (package sshmux), and fall back to a connection of their
// own when the daemon is gone.

type execResult struct {
	code   int
	err    error
	stdout string
	held   bool // went through the daemon's socket
}

// connectExec runs argv as `keystone agent exec` does: Connect, then Exec.
func connectExec(sb *sandbox.Sandbox, stdin io.Reader, argv ...string) execResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := sb.Connect(ctx)
	if err != nil {
		return execResult{code: sshconn.ExitTransport, err: err}
	}
	defer c.Close()
	var out bytes.Buffer
	code, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: argv, Dir: "/workspace", Stdin: stdin, Stdout: &out, Stderr: io.Discard})
	return execResult{code, err, out.String(), isHeld(c)}
}

// isHeld tells a client of the daemon's socket from a connection of its own.
func isHeld(c *ssh.Client) bool { return c.LocalAddr().Network() == "unix" }

func daemonPID(t *testing.T, sb *sandbox.Sandbox) int {
	t.Helper()
	pid, err := runner.ReadPIDFile(sb.Dir.Path(statedir.DaemonPID))
	if err != nil || pid == 0 {
		t.Fatalf("no host daemon pid: %d, %v", pid, err)
	}
	return pid
}

// Exit codes and 50 commands at once through the daemon, then the daemon
// killed with SIGKILL: its stale socket is noticed and exec falls back.
func TestHeldConnectionOnAVM(t *testing.T) {
	env := testenv.New(t)
	sb := env.Start(t, "held")
	for _, tc := range []struct {
		argv []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
	} {
		r := connectExec(sb, nil, tc.argv...)
		if r.err != nil || r.code != tc.code || !r.held {
			t.Errorf("%q = %d, %v (through the daemon: %v); want %d through the daemon", tc.argv, r.code, r.err, r.held, tc.code)
		}
	}

	const n = 50
	results := make([]execResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = connectExec(sb, nil, "sh", "-c", `echo "$0"; exit "$1"`, fmt.Sprintf("n%d", i), fmt.Sprint(i))
		}()
	}
	wg.Wait()
	held := 0
	for i, r := range results {
		if r.err != nil || r.code != i || r.stdout != fmt.Sprintf("n%d\n", i) {
			t.Errorf("concurrent exec %d = %d, %v, %q; want %d, %q", i, r.code, r.err, r.stdout, i, fmt.Sprintf("n%d\n", i))
		}
		if r.held {
			held++
		}
	}
	if held != n {
		t.Errorf("%d of %d concurrent execs went through the daemon; want all", held, n)
	}

	pid := daemonPID(t, sb)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Await(t, "the daemon to die", 10*time.Second, func() string {
		if runner.Inspect(pid, sb.Dir.State()) != runner.Gone {
			return fmt.Sprintf("pid %d still runs", pid)
		}
		return ""
	})
	if _, err := os.Stat(sb.Dir.Path(statedir.SessionSocket)); err != nil {
		t.Fatalf("SIGKILL left no socket to be stale: %v", err)
	}
	r := connectExec(sb, bytes.NewReader([]byte("a\nb\n")), "wc", "-l")
	if r.err != nil || r.code != 0 || r.held || r.stdout != "2\n" {
		t.Fatalf("exec with a stale socket = %d, %v, %q (through the daemon: %v); want 0, \"2\\n\" on a connection of its own", r.code, r.err, r.stdout, r.held)
	}
}

// The VM is killed while sessions are open through the daemon: each ends
// with the transport status (255, as ssh(1)), the daemon ends and removes its
// socket, and the next exec says the sandbox cannot be reached.
func TestVMKilledWhileSessionsAreOpen(t *testing.T) {
	env := testenv.New(t)
	sb := env.Start(t, "doomed")
	const open = 3
	started := make(chan struct{}, open)
	done := make(chan execResult, open)
	for range open {
		go func() {
			r, w := io.Pipe()
			defer w.Close()
			go func() {
				w.Write([]byte("x\n")) // taken once the command was accepted: stdin is copied only then
				started <- struct{}{}
			}()
			done <- connectExec(sb, r, "sh", "-c", "read x; exec cat")
		}()
	}
	for range open {
		select {
		case <-started:
		case r := <-done:
			t.Fatalf("a session ended before the VM was killed: %d, %v", r.code, r.err)
		case <-time.After(2 * time.Minute):
			t.Fatal("the sessions did not start")
		}
	}
	vm, err := runner.ReadPID(sb.Dir.State())
	if err != nil || vm == 0 {
		t.Fatalf("pid file: %d, %v", vm, err)
	}
	daemon := daemonPID(t, sb)
	if err := syscall.Kill(-vm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range open {
		select {
		case r := <-done:
			var te *sshconn.TransportError
			if r.code != sshconn.ExitTransport || !errors.As(r.err, &te) || !r.held {
				t.Errorf("a session when the VM was killed = %d, %v (through the daemon: %v); want %d and a *TransportError through the daemon", r.code, r.err, r.held, sshconn.ExitTransport)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a session open when the VM was killed did not end")
		}
	}
	testenv.Await(t, "the daemon to end with its VM", 30*time.Second, func() string {
		if runner.Inspect(daemon, sb.Dir.State()) != runner.Gone {
			return fmt.Sprintf("daemon pid %d still runs", daemon)
		}
		if _, err := os.Stat(sb.Dir.Path(statedir.SessionSocket)); err == nil {
			return "its socket is still there"
		}
		return ""
	})
	if r := connectExec(sb, nil, "true"); r.err == nil || r.held {
		t.Errorf("exec on the killed VM = %d, %v (through the daemon: %v); want a connection error", r.code, r.err, r.held)
	}
}

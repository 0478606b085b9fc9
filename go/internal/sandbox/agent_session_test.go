package sandbox_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// A declared sandbox's VM is booted by systemd, so its host daemon starts the
// agent's session once SSH answers; run on a real VM, the service starts
// the session once and leaves a running one alone; a client whose terminal
// closes detaches and leaves the agent running.
func TestSessionServiceStartsTheAgent(t *testing.T) {
	env := testenv.New(t)
	testenv.Guest(t)
	sb := env.Start(t, "declared-like") // no agent: nothing started the session
	if sb.SessionAlive(context.Background()) {
		t.Fatal("a session runs before the service started it")
	}
	as := *sb
	as.Agent, as.Declared = "codex", true
	logged := make(chan string, 10)
	svc := &sandbox.SessionService{Sandbox: &as, Logf: func(f string, a ...any) { logged <- f }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- svc.Run(ctx, hostd.VM{Gone: make(chan struct{}), Ready: func() { close(ready) }}) }()
	select {
	case <-ready: // at once: the service never holds the daemon up
	case <-time.After(5 * time.Second):
		t.Fatal("the service was not ready at once")
	}
	testenv.Await(t, "the agent's session", 3*time.Minute, func() string {
		if !sb.SessionAlive(context.Background()) {
			return "no session; want one running codex"
		}
		return ""
	})
	if out := execOut(t, sb, "tmux", "list-panes", "-t", "keystone-agent", "-F", "#{pane_current_command}"); strings.TrimSpace(out) != "codex" {
		t.Fatalf("the session runs %q; want codex", out)
	}
	if got := <-logged; !strings.HasPrefix(got, "started") {
		t.Errorf("logged %q; want the start", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("service: %v", err)
	}
	pid := execOut(t, sb, "tmux", "list-panes", "-t", "keystone-agent", "-F", "#{pane_pid}")
	// A second run (the daemon restarted) finds the session and keeps it.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- svc.Run(ctx, hostd.VM{Gone: make(chan struct{}), Ready: func() {}}) }()
	select {
	case got := <-logged:
		if !strings.Contains(got, "runs already") {
			t.Errorf("second run logged %q; want that the session runs already", got)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the second run said nothing within 2 minutes")
	}
	cancel()
	<-done
	if again := execOut(t, sb, "tmux", "list-panes", "-t", "keystone-agent", "-F", "#{pane_pid}"); again != pid {
		t.Fatalf("pane pid %s after a second run; want %s", again, pid)
	}

	// Closing the terminal detaches: a client attached through a PTY whose
	// SSH connection is dropped leaves the agent running.
	c, err := sb.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm-256color", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("tmux -u attach -t keystone-agent"); err != nil {
		t.Fatal(err)
	}
	testenv.Await(t, "the client to attach", 2*time.Minute, func() string {
		if n := strings.TrimSpace(execOut(t, sb, "sh", "-c", "tmux list-clients -t keystone-agent | wc -l")); n != "1" {
			return "clients " + n + "; want 1"
		}
		return ""
	})
	c.Close() // the terminal goes away without a detach key
	testenv.Await(t, "the client to go", 2*time.Minute, func() string {
		if n := strings.TrimSpace(execOut(t, sb, "sh", "-c", "tmux list-clients -t keystone-agent | wc -l")); n != "0" {
			return "clients " + n + "; want 0"
		}
		return ""
	})
	if again := execOut(t, sb, "tmux", "list-panes", "-t", "keystone-agent", "-F", "#{pane_pid}"); again != pid {
		t.Fatalf("pane pid %s after the terminal closed; want %s", again, pid)
	}
}

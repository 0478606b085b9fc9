package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// WorkDir is where sessions start in the guest: the workspace.
const WorkDir = "/workspace"

// writeGuestConf writes this start's session environment and git identity
// into the guest share (package guestconf); the guest copies them at boot.
// present are the names of the credentials the host daemon's proxy holds.
func (e *Env) writeGuestConf(ctx context.Context, sb *Sandbox, present []string) error {
	return WriteGuestConf(ctx, sb, present, e.Progress)
}

// WriteGuestConf is writeGuestConf for a declared sandbox, whose prepare
// unit runs it before the VM boots; warnings go to w.
func WriteGuestConf(ctx context.Context, sb *Sandbox, present []string, w io.Writer) error {
	id, err := guestconf.HostIdentity(ctx, sb.ProjectPath, sb.Name)
	if err != nil && w != nil {
		fmt.Fprintf(w, "keystone: warning: cannot read the project's git identity (%v); commits in the sandbox are by %s\n", err, id)
	}
	env, err := guestconf.EnvironmentFile(guestconf.Config{Name: sb.Name, Identity: id, Extra: proxyVars(present)})
	if err != nil {
		return err
	}
	git, err := guestconf.GitConfig(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sb.Dir.Guest(), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(sb.Dir.Guest(), statedir.GuestEnvironment), env, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(sb.Dir.Guest(), statedir.GuestGitConfig), git, 0o644)
}

// proxyVars are the egress proxy's session variables (docs/egress.md): the
// proxy, each provider's base URL on it and the placeholder keys. Without
// them in the environment file an agent in the guest would call its
// provider directly, which the guest's network refuses.
func proxyVars(present []string) []guestconf.Var {
	var out []guestconf.Var
	for _, v := range proxy.GuestEnvironment(present) {
		out = append(out, guestconf.Var{Name: v.Name, Value: v.Value})
	}
	return out
}

// GitIdentity is the identity the sandbox's last start gave the guest.
func (sb *Sandbox) GitIdentity() (guestconf.Identity, bool) {
	data, err := os.ReadFile(filepath.Join(sb.Dir.Guest(), statedir.GuestGitConfig))
	if err != nil {
		return guestconf.Identity{}, false
	}
	id, err := guestconf.ReadIdentity(data)
	return id, err == nil
}

// agent returns the manifest's entry for the sandbox's agent.
func (sb *Sandbox) agent() (agents.Agent, error) {
	m, err := agents.Load()
	if err != nil {
		return agents.Agent{}, err
	}
	return m.Agent(sb.Agent)
}

// startSession starts the sandbox's agent in its tmux session, detached.
func (e *Env) startSession(ctx context.Context, sb *Sandbox) error {
	if sb.Agent == "" {
		return nil
	}
	a, err := sb.agent()
	if err != nil {
		return err
	}
	e.progressf("Starting %s in the session %q", sb.Agent, agents.SessionName)
	err = sb.seed(ctx, a)
	if err == nil {
		err = sb.runOK(ctx, a.StartArgv(WorkDir))
	}
	if err != nil {
		return fmt.Errorf("failed to start %s in sandbox %q: %w", sb.Agent, sb.Name, err)
	}
	return nil
}

// seed writes the agent's missing first-run files into the guest's home.
func (sb *Sandbox) seed(ctx context.Context, a agents.Agent) error {
	if argv := a.SeedArgv(); argv != nil {
		return sb.runOK(ctx, argv)
	}
	return nil
}

// SessionAlive tells whether the agent's tmux session runs in the guest.
func (sb *Sandbox) SessionAlive(ctx context.Context) bool {
	code, _, err := sb.run(ctx, agents.AliveArgv())
	return err == nil && code == 0
}

// sessionCheckTimeout bounds the SSH round trip of a status.
const sessionCheckTimeout = 10 * time.Second

// inspectSession adds the agent, whether its session runs, and the git
// identity of the last start to a status.
func inspectSession(sb *Sandbox, st *Status) {
	if id, ok := sb.GitIdentity(); ok {
		st.GitIdentity = &id
	}
	st.Agent = sb.Agent
	if sb.Agent == "" {
		return
	}
	st.AgentSession = "stopped"
	if st.State == Running {
		ctx, cancel := context.WithTimeout(context.Background(), sessionCheckTimeout)
		defer cancel()
		if sb.SessionAlive(ctx) {
			st.AgentSession = "running"
		}
	}
}

// AttachArgv is what `attach` runs instead of a login shell: the agent's
// session, joined or started (a declared sandbox's first attach starts it,
// so its first-run files are written first); nil when the sandbox has no agent.
func (sb *Sandbox) AttachArgv(ctx context.Context) ([]string, error) {
	if sb.Agent == "" {
		return nil, nil
	}
	a, err := sb.agent()
	if err != nil {
		return nil, err
	}
	if err := sb.seed(ctx, a); err != nil {
		return nil, fmt.Errorf("failed to prepare %s in sandbox %q: %w", sb.Agent, sb.Name, err)
	}
	return a.AttachArgv(WorkDir), nil
}

// runOK runs argv in the guest; a non-zero status is an error with its stderr.
func (sb *Sandbox) runOK(ctx context.Context, argv []string) error {
	code, stderr, err := sb.run(ctx, argv)
	if err == nil && code != 0 {
		err = fmt.Errorf("%s exited with %d: %s", argv[0], code, stderr)
	}
	return err
}

// run runs argv in the guest with the session environment and returns its
// status and its stderr.
func (sb *Sandbox) run(ctx context.Context, argv []string) (int, string, error) {
	client, err := sb.Dial(ctx)
	if err != nil {
		return 0, "", err
	}
	defer client.Close()
	var stderr bytes.Buffer
	code, err := sshconn.Exec(ctx, client, sshconn.Command{Argv: argv, Dir: WorkDir, Source: guestconf.EnvironmentPath, Stderr: &stderr})
	return code, strings.TrimSpace(stderr.String()), err
}

// SessionService starts a declared sandbox's agent session once its VM
// answers over SSH: systemd boots a declared VM, so no `start` does it. It
// is one of the host daemon's services (package hostd); it never holds the
// daemon's readiness up and does nothing when the session runs already.
type SessionService struct {
	Sandbox *Sandbox
	Logf    func(format string, args ...any)
}

// Name implements hostd.Service.
func (s *SessionService) Name() string { return "agent session (" + s.Sandbox.Agent + ")" }

// Run implements hostd.Service.
func (s *SessionService) Run(ctx context.Context, vm hostd.VM) error {
	vm.Ready()
	sb := s.Sandbox
	t, err := sb.Target()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-vm.Gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := sshconn.WaitReady(ctx, t, nil); err != nil {
		return nil // stopped or gone before it answered: nothing to start
	}
	if sb.SessionAlive(ctx) {
		s.Logf("the session %q runs already", agents.SessionName)
	} else {
		a, err := sb.agent()
		if err == nil {
			err = sb.seed(ctx, a)
		}
		if err == nil {
			err = sb.runOK(ctx, a.StartArgv(WorkDir))
		}
		if err != nil {
			return fmt.Errorf("failed to start %s in sandbox %q: %w", sb.Agent, sb.Name, err)
		}
		s.Logf("started %s in the session %q", sb.Agent, agents.SessionName)
	}
	<-ctx.Done()
	return nil
}

package sandbox

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// States a sandbox can be in. They are derived, never stored.
const (
	Running = "running"
	Stopped = "stopped"
	Broken  = "error"
)

// Status is one sandbox as `status --json` and `list --json` print it.
// The JSON field names are an API (docs/cli.md): only ever add to them.
type Status struct {
	Name        string    `json:"name"`
	State       string    `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	ProjectPath string    `json:"projectPath"`
	Workspace   string    `json:"workspace"`
	SSHPort     int       `json:"sshPort"`
	MemoryMB    int       `json:"memory"`
	VCPUs       int       `json:"vcpus"`
	Nested      bool      `json:"nested"`
	Network     string    `json:"network"`
	SyncMode    string    `json:"syncMode"`
	PID         int       `json:"pid,omitempty"`
	Declared    bool      `json:"declared"`
	Runner      string    `json:"runner,omitempty"`
	Created     time.Time `json:"created,omitzero"`
	// PasswordLogin: the guest accepts the password "sandbox" (the user had
	// no SSH key at the last start), so any local user can log in.
	PasswordLogin bool   `json:"passwordLogin"`
	Agent         string `json:"agent,omitempty"`
	// AgentSession is "running" or "stopped": the agent's tmux session.
	AgentSession string              `json:"agentSession,omitempty"`
	GitIdentity  *guestconf.Identity `json:"gitIdentity,omitempty"`
}

// Inspect derives the state of sb from evidence: the recorded pid, whether
// that process is still the runner, and whether SSH answers on the port.
func (e *Env) Inspect(sb *Sandbox) Status {
	st := Status{
		Name: sb.Name, ProjectPath: sb.ProjectPath, Workspace: sb.Dir.Workspace(),
		SSHPort: sb.SSHPort, MemoryMB: sb.MemoryMB, VCPUs: sb.VCPUs, Nested: sb.Nested,
		Network: sb.Network, SyncMode: sb.SyncMode, Declared: sb.Declared,
		Runner: sb.Runner, Created: sb.Created, PasswordLogin: sb.PasswordLogin(),
	}
	st.State, st.PID, st.Reason = evidence(sb)
	inspectSession(sb, &st)
	return st
}

func evidence(sb *Sandbox) (state string, pid int, reason string) {
	if _, err := os.Stat(sb.Dir.Workspace()); err != nil {
		return Broken, 0, "workspace " + sb.Dir.Workspace() + " is missing"
	}
	if sb.Declared {
		pid, err := unitPID(sb.Unit)
		if err != nil {
			return Broken, 0, err.Error()
		}
		if pid == 0 {
			return Stopped, 0, ""
		}
		if sshAnswers(sb.SSHPort) {
			return Running, pid, ""
		}
		return Broken, pid, fmt.Sprintf("%s runs (pid %d) but SSH does not answer on port %d", sb.Unit, pid, sb.SSHPort)
	}
	pid, err := runner.ReadPID(sb.Dir.State())
	switch {
	case err != nil:
		return Broken, 0, err.Error()
	case pid == 0:
		return Stopped, 0, ""
	}
	switch runner.Inspect(pid, sb.Dir.State()) {
	case runner.Gone:
		return Broken, pid, fmt.Sprintf("the VM (pid %d) exited without being stopped; see %s (`keystone agent start` recovers)", pid, consolePath(sb))
	case runner.Stranger:
		return Broken, pid, fmt.Sprintf("pid %d in %s belongs to another program", pid, pidPath(sb))
	}
	if !sshAnswers(sb.SSHPort) {
		return Broken, pid, fmt.Sprintf("the VM runs (pid %d) but SSH does not answer on 127.0.0.1:%d", pid, sb.SSHPort)
	}
	// The daemon holds the guest's only way out (its proxy), its background
	// forwards and its auto sync; without it the sandbox only looks running.
	if d, _ := sb.daemonPID(); d == 0 {
		return Broken, pid, fmt.Sprintf("the VM runs (pid %d) but its host daemon does not: no proxy (the guest's network), background forwards or auto sync; see %s (`keystone agent start` restarts the sandbox)", pid, sb.Dir.Path(statedir.DaemonLog))
	}
	return Running, pid, ""
}

// VMAlive tells whether the sandbox's VM process runs, without asking SSH:
// the recorded runner for an imperative sandbox, the systemd unit's main
// process for a declared one.
func VMAlive(sb *Sandbox) bool {
	if sb.Declared {
		pid, err := unitPID(sb.Unit)
		return err == nil && pid != 0
	}
	pid, err := runner.ReadPID(sb.Dir.State())
	return err == nil && pid != 0 && runner.Inspect(pid, sb.Dir.State()) == runner.Runner
}

// sshAnswers reads the server's identification line: qemu's port forward
// accepts connections before the guest's sshd is up, so a TCP connect proves
// nothing, while the "SSH-2.0-" banner comes only from a live sshd.
// The bounds are generous: the connect is local and a live sshd answers at
// once, but a guest under software emulation on a loaded machine can take
// seconds, and calling it broken then would be wrong.
func sshAnswers(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

func ownerOf(fi os.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return os.Getuid(), os.Getgid()
}

// InspectAll inspects sandboxes concurrently: each may wait on an SSH banner.
func (e *Env) InspectAll(sbs []*Sandbox) []Status {
	out := make([]Status, len(sbs))
	var wg sync.WaitGroup
	for i, sb := range sbs {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = e.Inspect(sb) }()
	}
	wg.Wait()
	return out
}

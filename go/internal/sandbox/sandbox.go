// Package sandbox owns the lifecycle of a sandbox: create, start, inspect,
// stop, destroy. It composes the registry (what was declared), the runner
// (the VM process), sshconn (readiness) and gitsync (the workspace clone).
//
// Whether a sandbox runs is never stored: Inspect derives it from evidence
// (pid file, process, SSH answering) every time. A failed start undoes what it
// created and never touches an existing workspace or the host project.
package sandbox

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Env is everything the lifecycle needs from outside: no globals.
type Env struct {
	Root     statedir.Dir
	Registry *registry.Registry
	Declared string    // path of the NixOS module's declared.json
	Home     string    // the user's home, for ~/.ssh public keys
	Progress io.Writer // stderr: progress lines
	// PortLock is the user's port lock (PortLockPath); empty: the one in Root.
	PortLock string
	// Timeouts bound the lifecycle's waits; zero fields take the defaults.
	Timeouts Timeouts
	// Keystone is the keystone program run as the host daemon; "" means
	// this program (tests, whose binary is not keystone, give a built one).
	Keystone string
}

// DeclaredEnv overrides DefaultDeclared (tests, the NixOS module's units).
const DeclaredEnv = "KEYSTONE_AGENT_DECLARED"

// DefaultDeclared is where the NixOS module writes declared sandboxes.
const DefaultDeclared = "/etc/keystone/agent/declared.json"

// NewEnv builds the Env of the current user.
func NewEnv(progress io.Writer) (*Env, error) {
	root, err := statedir.Root()
	if err != nil {
		return nil, err
	}
	return NewEnvAt(statedir.Dir(root), progress), nil
}

// NewEnvAt builds the Env of the current user on the state directory d (the
// host daemon is told its sandbox's).
func NewEnvAt(d statedir.Dir, progress io.Writer) *Env {
	home, _ := os.UserHomeDir()
	declared := os.Getenv(DeclaredEnv)
	if declared == "" {
		declared = DefaultDeclared
	}
	return &Env{
		Root:     d,
		Registry: registry.New(d.Registry(), d.Lock()),
		Declared: declared,
		Home:     home,
		Progress: progress,
	}
}

// Sandbox is one sandbox: its declaration and where it lives.
type Sandbox struct {
	registry.Entry
	Dir      statedir.Sandbox
	Declared bool   // from the NixOS module: systemd owns its VM
	Unit     string // declared only: the VM's systemd unit
}

func (e *Env) portLock() string {
	if e.PortLock != "" {
		return e.PortLock
	}
	return PortLockPath(e.Root)
}

// progressWriter is where progress goes: Progress, or nowhere.
func (e *Env) progressWriter() io.Writer {
	if e.Progress == nil {
		return io.Discard
	}
	return e.Progress
}

func (e *Env) progressf(format string, a ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", a...)
	}
}

// Get finds a sandbox by name among imperative and declared ones.
func (e *Env) Get(name string) (*Sandbox, error) {
	if err := names.Validate(name); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	ent, err := e.Registry.Get(name)
	if err == nil {
		return &Sandbox{Entry: ent, Dir: e.Root.Sandbox(name)}, nil
	}
	decl, derr := e.declared()
	if derr != nil {
		return nil, derr
	}
	for _, sb := range decl {
		if sb.Name == name {
			return sb, nil
		}
	}
	return nil, err
}

// List returns every sandbox, imperative first, each group sorted by name.
func (e *Env) List() ([]*Sandbox, error) {
	ents, err := e.Registry.List()
	if err != nil {
		return nil, err
	}
	out := make([]*Sandbox, 0, len(ents))
	seen := map[string]bool{}
	for _, ent := range ents {
		out = append(out, &Sandbox{Entry: ent, Dir: e.Root.Sandbox(ent.Name)})
		seen[ent.Name] = true
	}
	decl, err := e.declared()
	if err != nil {
		return nil, err
	}
	for _, sb := range decl {
		if !seen[sb.Name] {
			out = append(out, sb)
		}
	}
	return out, nil
}

// ForProject finds the sandbox whose project contains dir (the current
// directory when a verb is given no name). The deepest project wins.
func (e *Env) ForProject(dir string) (*Sandbox, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	all, err := e.List()
	if err != nil {
		return nil, err
	}
	var best *Sandbox
	for _, sb := range all {
		p := sb.ProjectPath
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if abs == p || len(abs) > len(p) && abs[:len(p)] == p && abs[len(p)] == '/' {
			if best == nil || len(sb.ProjectPath) > len(best.ProjectPath) {
				best = sb
			}
		}
	}
	if best == nil {
		return nil, withHint(fmt.Errorf("%w: no sandbox for %q", registry.ErrNotFound, abs), "give a name; `keystone agent list` shows them")
	}
	return best, nil
}

// runnerEnv is the contract's per-sandbox environment (docs/runner-contract.md),
// on top of this process's environment so PATH and friends still reach nix-built scripts,
// without any credential: the VM and what qemu starts never hold a key.
func (sb *Sandbox) runnerEnv(keystone string) []string {
	uid, gid := os.Getuid(), os.Getgid()
	if st, err := os.Stat(sb.Dir.Workspace()); err == nil {
		uid, gid = ownerOf(st)
	}
	nested := "0"
	if sb.Nested {
		nested = "1"
	}
	env := append(credentials.Scrub(os.Environ()), sb.proxyEnv(keystone)...)
	switch sb.Network {
	case "tap":
		if tap, err := TapInterface(sb.Name); err == nil {
			env = append(env, "KEYSTONE_TAP_INTERFACE="+tap)
		}
	case "bridge":
		env = append(env, "KEYSTONE_BRIDGE="+DefaultBridge)
	}
	return append(env,
		"KEYSTONE_SANDBOX_NAME="+sb.Name,
		"KEYSTONE_STATE_DIR="+sb.Dir.State(),
		"KEYSTONE_WORKSPACE="+sb.Dir.Workspace(),
		"KEYSTONE_GUEST_DIR="+sb.Dir.Guest(),
		"KEYSTONE_SSH_PORT="+strconv.Itoa(sb.SSHPort),
		"KEYSTONE_MEMORY_MB="+strconv.Itoa(sb.MemoryMB),
		"KEYSTONE_VCPUS="+strconv.Itoa(sb.VCPUs),
		"KEYSTONE_NESTED="+nested,
		"KEYSTONE_NETWORK="+sb.Network,
		"KEYSTONE_HOST_UID="+strconv.Itoa(uid),
		"KEYSTONE_HOST_GID="+strconv.Itoa(gid),
		"KEYSTONE_QMP_SOCKET="+statedir.QMPSocket,
	)
}

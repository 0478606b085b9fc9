// Package statedir names every path under the keystone agent state directory
// (~/.config/keystone/agent, or $XDG_CONFIG_HOME/keystone/agent).
//
// It owns the layout only: it never creates, reads or removes anything, so the
// whole layout can be read on one screen. The layout is a promise of the user
// guide ("State Directory"); docs/internals.md draws it.
package statedir

import (
	"errors"
	"os"
	"path/filepath"
)

// File and directory names, relative to their parent.
const (
	// RegistryFile lists every sandbox created with `keystone agent start`.
	RegistryFile = "sandboxes.json"
	// LockFile serialises read-modify-write of the registry.
	LockFile = "sandboxes.lock"
	// PortsLock serialises the user's starts from picking a port until the
	// hypervisor has bound it; it is in $XDG_RUNTIME_DIR when that is set.
	PortsLock = "keystone-agent-ports.lock"
	// SSHConfig holds a `Host keystone-<name>` block per sandbox, for the
	// host's ssh; ~/.ssh/config includes it after `ssh-config --install`.
	SSHConfig = "ssh_config"
	// SandboxesDir holds one directory per sandbox.
	SandboxesDir = "sandboxes"
	// CredentialsFile holds the agents' API keys as NAME=value lines, mode
	// 0600; read by `start` and handed to the host daemon's proxy only.
	CredentialsFile = "credentials"
	// SandboxLockSuffix names the flock next to a sandbox's directory
	// (sandboxes/<name>.lock), held by start, stop and destroy of that sandbox;
	// it lives outside the directory so that --fresh and destroy can remove it whole.
	SandboxLockSuffix = ".lock"
	// DiscardPrefix names where a sandbox's directory is moved to be removed
	// (sandboxes/.discard-<name>.<random>), by destroy, --fresh and a failed
	// start: a kill leaves the directory whole or gone, never half removed.
	DiscardPrefix = ".discard-"

	// WorkspaceDir is the clone of the project, shared into the guest at /workspace.
	WorkspaceDir = "workspace"
	// WorkspacePartial is where the first clone is built; it is renamed to
	// WorkspaceDir only when complete, so an interrupted clone never boots.
	WorkspacePartial = "workspace.partial"
	// StateDir holds everything else of a sandbox; it is the runner's working directory.
	StateDir = "state"

	// FlakeDir is the build source of a nix-built runner (state/): it holds
	// FlakeFile and FlakeLock and nothing else, because `nix build path:.`
	// copies the whole directory into the world-readable Nix store.
	FlakeDir = "flake"
	// FlakeFile is the generated per-sandbox flake (state/flake/; state/flake.nix links to it).
	FlakeFile = "flake.nix"
	// FlakeLock pins the flake's inputs; nix writes it (state/flake/).
	FlakeLock = "flake.lock"
	// RunnerLink points at the runner directory: the `nix build` result or --runner DIR (state/).
	RunnerLink = "runner"
	// PIDFile holds the runner's process id while it runs (state/).
	PIDFile = "microvm.pid"
	// ConsoleLog receives the runner's stdout and stderr: serial console and hypervisor messages (state/).
	ConsoleLog = "console.log"
	// BuildLog receives the output of `nix build` (state/).
	BuildLog = "build.log"
	// QMPSocket is the hypervisor's QMP socket, relative to state/ so its path stays short.
	QMPSocket = "qmp.sock"
	// ClientKey is the sandbox's SSH client private key; it never leaves the host (state/).
	ClientKey = "client_ed25519"
	// KnownHosts holds the pinned host key alone, for the host's ssh (state/).
	KnownHosts = "known_hosts"
	// GuestDir is shared read-only into the guest: host key, authorized_keys (state/).
	GuestDir = "guest"
	// HostKey is the guest's SSH host private key (state/guest/).
	HostKey = "ssh_host_ed25519_key"
	// AuthorizedKeys lists the keys allowed to log in as `sandbox` (state/guest/).
	AuthorizedKeys = "authorized_keys"
	// PasswordAuth exists when the user has no SSH key: the guest allows password `sandbox` (state/guest/).
	PasswordAuth = "password-auth"
	// GuestEnvironment is the sessions' environment, rewritten at every start (state/guest/; package guestconf).
	GuestEnvironment = "environment"
	// GuestGitConfig is the guest's git identity, rewritten at every start (state/guest/; package guestconf).
	GuestGitConfig = "gitconfig"

	// DaemonPID holds the host daemon's pid while it runs (state/): the
	// per-sandbox process of `keystone agent hostd` (sync watcher and other
	// host-side services).
	DaemonPID = "hostd.pid"
	// DaemonLog receives the host daemon's output (state/).
	DaemonLog = "hostd.log"
	// SessionSocket is the host daemon's unix socket (0600) for exec and
	// attach: sessions on the SSH connection it holds (state/).
	SessionSocket = "ssh.sock"
	// ProxySocket is the host daemon's socket for the guest's proxy
	// connections, handed over by `keystone agent proxy-relay` (state/).
	ProxySocket = "proxy.sock"
	// EgressStatus lists the destinations the proxy refused lately (state/).
	EgressStatus = "egress.json"
	// ForwardSocket is the host daemon's control socket for background
	// port forwards, owner only (state/).
	ForwardSocket = "forward.sock"
	// SyncStatus is the last sync's result, written atomically by sync and the watcher (state/).
	SyncStatus = "sync.json"
	// SyncLock serialises the syncs of one sandbox: sync, stop --sync, the watcher (state/).
	SyncLock = "sync.lock"

	// The Debian test guest's runner keeps two more directories in state/,
	// which no Go code touches: home/ (the guest's /home/sandbox, kept across
	// restarts) and control/ (host-to-guest requests such as poweroff).
)

// Root is the state directory: $XDG_CONFIG_HOME/keystone/agent, else ~/.config/keystone/agent.
func Root() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "keystone", "agent"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find the state directory: neither XDG_CONFIG_HOME nor HOME is set")
	}
	return filepath.Join(home, ".config", "keystone", "agent"), nil
}

// Dir is a state directory root.
type Dir string

// Registry is the path of sandboxes.json.
func (d Dir) Registry() string { return filepath.Join(string(d), RegistryFile) }

// Credentials is the path of the credentials file.
func (d Dir) Credentials() string { return filepath.Join(string(d), CredentialsFile) }

// Lock is the path of the registry lock file.
func (d Dir) Lock() string { return filepath.Join(string(d), LockFile) }

// SSHConfig is the path of the file ~/.ssh/config includes.
func (d Dir) SSHConfig() string { return filepath.Join(string(d), SSHConfig) }

// Sandbox returns the paths of one sandbox.
func (d Dir) Sandbox(name string) Sandbox {
	return Sandbox(filepath.Join(string(d), SandboxesDir, name))
}

// Sandbox is the directory of one sandbox.
type Sandbox string

// Root is the sandbox directory itself.
func (s Sandbox) Root() string { return string(s) }

// Lock is the sandbox's lock file, next to its directory.
func (s Sandbox) Lock() string { return string(s) + SandboxLockSuffix }

// Discarded is the pattern (filepath.Match) of where the sandbox's directory
// is moved to be removed: a name that no sandbox can have.
func (s Sandbox) Discarded() string {
	return filepath.Join(filepath.Dir(string(s)), DiscardPrefix+filepath.Base(string(s))+".*")
}

// Workspace is the clone of the project.
func (s Sandbox) Workspace() string { return filepath.Join(string(s), WorkspaceDir) }

// WorkspacePartial is where the first clone is built.
func (s Sandbox) WorkspacePartial() string { return filepath.Join(string(s), WorkspacePartial) }

// State is the runner's working directory.
func (s Sandbox) State() string { return filepath.Join(string(s), StateDir) }

// Path joins a name from this package onto state/.
func (s Sandbox) Path(name string) string { return filepath.Join(s.State(), name) }

// Guest is the directory shared read-only into the guest.
func (s Sandbox) Guest() string { return s.Path(GuestDir) }

// FlakeSource is the directory `nix build` copies into the store: state/flake.
func (s Sandbox) FlakeSource() string { return s.Path(FlakeDir) }

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/announce"
	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/kvm"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/nixbuild"
	"github.com/keystone-agent/keystone/internal/progress"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testguest"
)

// Errors start maps to the guide's exit codes.
var (
	ErrNotRepo        = errors.New("not a git repository")
	ErrAlreadyRunning = errors.New("sandbox already running")
)

// BootError says the VM did not become reachable; Log is the console's tail.
type BootError struct {
	Msg string
	Log string
	Err error // why: sshconn.ErrVMExited, the context's error…
}

func (e *BootError) Error() string { return e.Msg }

func (e *BootError) Unwrap() error { return e.Err }

// Detail is the console's tail, printed under the error line.
func (e *BootError) Detail() string { return e.Log }

// Start creates the sandbox when it is new, boots it and waits until SSH
// answers with the pinned host key. A sandbox that runs already is refused
// (ErrAlreadyRunning) unless spec.Fresh, which stops it and starts over.
func (e *Env) Start(ctx context.Context, spec Spec) (*Sandbox, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	project, err := repoRoot(ctx, spec.Project)
	if err != nil {
		return nil, err
	}
	name := spec.Name
	if name == "" {
		if name, err = names.FromPath(project); err != nil {
			return nil, &UsageError{Msg: err.Error(), hint: "give one with --name"}
		}
	}
	// Every refusal comes before anything is created; the checks run again
	// under the sandbox's lock, since another command may have acted between.
	if _, err := e.plan(ctx, spec, project, name); err != nil {
		return nil, err
	}
	sb := &Sandbox{Dir: e.Root.Sandbox(name)}
	sb.Name = name
	lk, err := lockSandbox(sb)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	pl, err := e.plan(ctx, spec, project, name)
	if err != nil {
		if !pl.existed {
			os.Remove(sb.Dir.Lock()) // a refused new sandbox leaves nothing
		}
		return nil, err
	}
	if pl.portable {
		e.progressf("nix is not installed: using the portable Debian guest %s (docs/testguest.md)", pl.runnerDir)
	}
	old, existed, runnerDir := pl.old, pl.existed, pl.runnerDir
	e.reportCredentials(pl.creds)
	keep := existed && !spec.Fresh
	sb.Entry = old
	if existed {
		if err := e.stopLeftover(sb); err != nil {
			return nil, err
		}
		if err := removeDiscarded(sb); err != nil {
			e.progressf("keystone: warning: %v", err)
		}
	}
	if _, err := os.Stat(sb.Dir.Root()); (spec.Fresh || !existed) && err == nil {
		if existed {
			e.progressf("Discarding the previous state of %q", name)
		} else {
			// A directory without an entry is what an interrupted start of an
			// earlier version left behind: nothing refers to it.
			e.progressf("Removing what an interrupted start of %q left behind", name)
		}
		if err := removeDir(sb); err != nil {
			return nil, fmt.Errorf("failed to discard the previous state: %w", err)
		}
	}
	sb.Entry = registry.Entry{
		Name: name, ProjectPath: project, MemoryMB: spec.MemoryMB, VCPUs: spec.VCPUs,
		Nested: spec.Nested, Network: spec.Network, SyncMode: spec.SyncMode,
		SSHPort: old.SSHPort, HostKey: old.HostKey, Runner: runnerDir, Created: old.Created,
		Egress: pl.egress,
		Agent:  spec.agentFor(old),
	}
	if !keep || sb.Created.IsZero() {
		sb.Created = time.Now().UTC().Truncate(time.Second)
	}
	// The entry comes before anything on disk, so a start killed at any
	// point leaves a sandbox that list shows and destroy removes.
	if err := e.Registry.Update(func(tx *registry.Tx) error { tx.Put(sb.Entry); return nil }); err != nil {
		if !existed {
			os.Remove(sb.Dir.Lock())
		}
		return nil, err
	}
	var proc *runner.Process
	if err := e.boot(ctx, sb, runnerDir, pl.creds, &proc); err != nil {
		return nil, e.undo(sb, proc, keep, err)
	}
	if err := e.startSession(ctx, sb); err != nil {
		return nil, e.undo(sb, proc, keep, err)
	}
	return sb, nil
}

// plan is what start decided before changing anything.
type plan struct {
	old       registry.Entry
	existed   bool
	runnerDir string // absolute; empty: build with nix
	portable  bool   // runnerDir is the portable guest, chosen because nix is absent
	egress    egress.Settings
	creds     credentials.Set // the environment's and the credentials file's
}

// plan reads the registry and checks everything that can refuse a start:
// the project owning the name, a running sandbox, the runner, the network
// mode, KVM. It changes nothing.
func (e *Env) plan(ctx context.Context, spec Spec, project, name string) (plan, error) {
	old, err := e.Registry.Get(name)
	p := plan{old: old, existed: err == nil, runnerDir: old.Runner}
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return p, err
	}
	if p.existed && old.ProjectPath != project {
		return p, usagef("sandbox %q belongs to project %q, not %q (choose another --name)", name, old.ProjectPath, project)
	}
	if p.existed && !spec.Fresh {
		if state, _, _ := evidence(&Sandbox{Entry: old, Dir: e.Root.Sandbox(name)}); state == Running {
			return p, withHint(fmt.Errorf("%w: %q", ErrAlreadyRunning, name), "`keystone agent attach %s` opens a shell; --fresh starts over", name)
		}
	}
	if spec.Runner != "" {
		p.runnerDir = spec.Runner
	}
	if p.runnerDir == "" && !nixbuild.Available() {
		if p.runnerDir, err = e.portableGuest(ctx); err != nil {
			return p, err
		}
		p.portable = true
	}
	needsKVM := true
	if p.runnerDir != "" {
		if p.runnerDir, err = filepath.Abs(p.runnerDir); err != nil {
			return p, err
		}
		meta, err := runner.Check(p.runnerDir)
		if err != nil {
			return p, &UsageError{Msg: err.Error()}
		}
		needsKVM = meta.NeedsKVM
		if meta.Networks != nil && !slices.Contains(meta.Networks, spec.Network) {
			return p, usagef("the runner %q supports network modes %s, not %q", p.runnerDir, strings.Join(meta.Networks, ", "), spec.Network)
		}
	} else if !slices.Contains(nixbuild.Networks, spec.Network) {
		return p, usagef("network mode %q needs a declared sandbox (keystone.agent.sandboxes in the NixOS configuration); `keystone agent start` supports %s", spec.Network, strings.Join(nixbuild.Networks, ", "))
	}
	if spec.Network == "tap" {
		if _, err := TapInterface(name); err != nil {
			return p, err
		}
	}
	remembered := old.Egress
	if remembered.Mode == "" {
		remembered.Mode = egress.DefaultModeFor(spec.Network)
	}
	p.egress = spec.Egress.Apply(remembered)
	if err := egress.CheckNetwork(spec.Network, p.egress.Mode); err != nil {
		return p, &UsageError{Msg: err.Error()}
	}
	if p.creds, err = e.credentials(spec.Credentials); err != nil {
		return p, err
	}
	if needsKVM {
		if err := kvm.Check(kvm.Device()); err != nil {
			return p, err
		}
	}
	return p, nil
}

// stopLeftover stops a VM that runs although a start is allowed: with
// --fresh, or alive without SSH answering (hung), and drops a stale pid file.
func (e *Env) stopLeftover(sb *Sandbox) error {
	_, pid, _ := evidence(sb)
	if pid != 0 && runner.Inspect(pid, sb.Dir.State()) == runner.Runner {
		e.progressf("Stopping the previous VM of %q (pid %d)", sb.Name, pid)
		if _, err := runner.Stop(e.runnerDir(sb), sb.Dir.State(), sb.runnerEnv(e.keystone()), pid, nil, e.Timeouts.withDefaults().Stop); err != nil {
			return err
		}
	}
	return runner.RemovePID(sb.Dir.State())
}

func (e *Env) boot(ctx context.Context, sb *Sandbox, runnerDir string, creds credentials.Set, proc **runner.Process) error {
	for _, d := range []string{sb.Dir.Root(), sb.Dir.State()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if _, err := os.Stat(sb.Dir.Workspace()); errors.Is(err, fs.ErrNotExist) {
		if err := e.clone(ctx, sb); err != nil {
			return err
		}
	}
	if err := giveAwayFromRoot(sb.Dir.Workspace()); err != nil {
		return fmt.Errorf("failed to hand the workspace to the guest user: %w", err)
	}
	hostKey, err := e.ensureKeys(sb)
	if err != nil {
		return err
	}
	if err := e.writeGuestConf(ctx, sb, creds.Names()); err != nil {
		return err
	}
	sb.HostKey = hostKey
	if runnerDir == "" {
		if runnerDir, err = e.build(ctx, sb); err != nil {
			return err
		}
	} else if err := atomicfile.Symlink(runnerDir, sb.Dir.Path(statedir.RunnerLink)); err != nil {
		return err
	}
	// A process outside keystone can take the port between the check and
	// qemu's bind; the runner then exits at once while the port is held, and
	// the start moves on to another port.
	reserved := e.declaredPorts()
	for attempt := 1; ; attempt++ {
		consoleFrom := announce.End(consolePath(sb))
		p, err := e.launch(ctx, sb, runnerDir, reserved)
		if p != nil {
			*proc = p
		}
		if err != nil {
			return err
		}
		// The daemon's SSH connection is the readiness proof, and the
		// connection the first command then uses.
		err = e.StartDaemon(sb, creds, p, consoleFrom)
		var exited bool
		select {
		case <-p.Done():
			exited = true
		default:
		}
		if err != nil && exited && (!portFree(sb.SSHPort) || forwardRefused(err)) && attempt < 3 {
			e.progressf("Port %d was taken by another process; trying another", sb.SSHPort)
			reserved[sb.SSHPort] = true
			*proc = nil
			continue
		}
		return err
	}
}

// forwardRefused tells whether qemu said it could not bind the SSH forward.
// The port can be free again by the time portFree looks: another start's
// check binds a candidate port for a moment (portFree, of another user or
// state directory, whose port lock is not this one's), and a bind that
// meets it fails.
func forwardRefused(err error) bool {
	var be *BootError
	return errors.As(err, &be) && strings.Contains(be.Log, "Could not set up host forwarding rule")
}

// portableGuest is the runner used where nix is absent: the Debian test
// guest, built from this machine's packages or reused from its
// content-addressed cache (docs/testguest.md).
func (e *Env) portableGuest(ctx context.Context) (string, error) {
	var line *progress.Line // only when it is built, not found in the cache
	dir, err := testguest.Build(ctx, testguest.Options{Step: func(phase string) {
		if line == nil {
			line = progress.Start(e.progressWriter(), "Building the portable Debian guest (once; it is cached)")
		}
		line.Set(phase)
	}})
	if line != nil {
		line.Done()
	}
	if err != nil {
		return "", fmt.Errorf("%w, and the portable guest cannot be built: %v", nixbuild.ErrNixNotFound, err)
	}
	return dir, nil
}

// clone builds the first clone in workspace.partial and renames it into
// place once complete and on disk: a start killed mid-clone leaves only the
// partial clone, which the next start discards, never a half-empty workspace.
func (e *Env) clone(ctx context.Context, sb *Sandbox) error {
	partial := sb.Dir.WorkspacePartial()
	if err := os.RemoveAll(partial); err != nil {
		return fmt.Errorf("failed to discard an interrupted clone: %w", err)
	}
	line := progress.Start(e.progressWriter(), fmt.Sprintf("Cloning %s into %s", sb.ProjectPath, sb.Dir.Workspace()))
	err := gitsync.CloneSteps(ctx, sb.ProjectPath, partial, line.Set)
	line.Done()
	if err != nil {
		return fmt.Errorf("failed to clone the project: %w", err)
	}
	if err := syncFS(partial); err != nil {
		return fmt.Errorf("failed to clone the project: %w", err)
	}
	if err := os.Rename(partial, sb.Dir.Workspace()); err != nil {
		return fmt.Errorf("failed to clone the project: %w", err)
	}
	return atomicfile.SyncDir(sb.Dir.Root())
}

// syncFS flushes the file system holding dir: the clone's many files in one call.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func (e *Env) build(ctx context.Context, sb *Sandbox) (string, error) {
	flake, err := nixbuild.Render(nixbuild.Params{Name: sb.Name, Network: sb.Network, Agent: sb.Agent})
	if err != nil {
		return "", err
	}
	// state/flake holds the flake alone (nixbuild.Build says why), not
	// even what a start killed while writing it left; state/flake.nix,
	// where the guide shows it, links there.
	src := sb.Dir.FlakeSource()
	file := filepath.Join(src, statedir.FlakeFile)
	if err := os.MkdirAll(src, 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.RemoveLeftovers(file); err != nil {
		return "", err
	}
	if err := atomicfile.Write(file, flake, 0o644); err != nil {
		return "", err
	}
	if err := atomicfile.Symlink(filepath.Join(statedir.FlakeDir, statedir.FlakeFile), sb.Dir.Path(statedir.FlakeFile)); err != nil {
		return "", err
	}
	// a flake.lock of the layout before state/flake
	if err := os.Remove(sb.Dir.Path(statedir.FlakeLock)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	// On a terminal, one line says what nix builds and its last log line;
	// elsewhere nix is quiet: state/build.log has it all, and a failure
	// shows its tail.
	line := progress.Start(e.progressWriter(), fmt.Sprintf("Building the MicroVM for %q (the first build takes a few minutes)", sb.Name))
	defer line.Done()
	return nixbuild.Build(ctx, sb.Dir.State(), nixbuild.NewStatus(line.Set))
}

// undo removes what a failed start created; an existing sandbox keeps its
// workspace and registry entry, a new one is removed entirely.
func (e *Env) undo(sb *Sandbox, proc *runner.Process, keep bool, cause error) error {
	var errs *multierror.Error
	if proc != nil {
		if _, err := runner.Stop(e.runnerDir(sb), sb.Dir.State(), sb.runnerEnv(e.keystone()), proc.Pid, proc.Done(), e.Timeouts.withDefaults().Undo); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if !keep {
		// The lock file goes too; this start still holds it, which is harmless.
		if err := removeDir(sb); err != nil {
			errs = multierror.Append(errs, err)
		}
		if err := os.Remove(sb.Dir.Lock()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = multierror.Append(errs, err)
		}
		if err := e.Registry.Update(func(tx *registry.Tx) error { tx.Delete(sb.Name); return nil }); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if errs.ErrorOrNil() != nil {
		errs.ErrorFormat = oneLine
		return fmt.Errorf("%w (and cleaning up failed: %v)", cause, errs)
	}
	return cause
}

// launch picks the port and starts the runner under the machine-wide port
// lock, held until the hypervisor has bound the port: without it, two starts
// (of any user, any state directory) could both find a port free.
func (e *Env) launch(ctx context.Context, sb *Sandbox, runnerDir string, reserved map[int]bool) (*runner.Process, error) {
	unlock, err := e.lockPorts(ctx, e.portLock(), e.Timeouts.withDefaults().PortLock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := e.Registry.Update(func(tx *registry.Tx) error {
		port, err := pickPort(tx, sb.Name, sb.SSHPort, reserved)
		if err != nil {
			return err
		}
		if sb.SSHPort != 0 && port != sb.SSHPort {
			e.progressf("Port %d is in use; %q now uses port %d", sb.SSHPort, sb.Name, port)
		}
		sb.SSHPort = port
		tx.Put(sb.Entry)
		return nil
	}); err != nil {
		return nil, err
	}
	e.progressf("Booting %q (%d MB, %d vCPUs, SSH on 127.0.0.1:%d)", sb.Name, sb.MemoryMB, sb.VCPUs, sb.SSHPort)
	p, err := runner.Start(runnerDir, sb.Dir.State(), sb.runnerEnv(e.keystone()))
	if err != nil {
		return nil, err
	}
	awaitBound(sb.SSHPort, p.Done(), 10*time.Second)
	return p, nil
}

// repoRoot returns the top directory of the git repository containing path.
// The host repository is the user's own and trusted; it is only read.
func repoRoot(ctx context.Context, path string) (string, error) {
	if path == "" {
		path = "."
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: %q is not a directory", ErrNotRepo, abs)
	}
	root, err := gitsync.RepoRoot(ctx, abs)
	if errors.Is(err, gitsync.ErrNotWorkTree) {
		return "", fmt.Errorf("%w: %q", ErrNotRepo, abs)
	}
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	return root, nil
}

func (e *Env) runnerDir(sb *Sandbox) string {
	if d, err := filepath.EvalSymlinks(sb.Dir.Path(statedir.RunnerLink)); err == nil {
		return d
	}
	return sb.Runner
}

func (e *Env) declaredPorts() map[int]bool {
	decl, _ := e.declared()
	out := map[int]bool{}
	for _, d := range decl {
		out[d.SSHPort] = true
	}
	return out
}

func consolePath(sb *Sandbox) string { return sb.Dir.Path(statedir.ConsoleLog) }

func pidPath(sb *Sandbox) string { return sb.Dir.Path(statedir.PIDFile) }

// oneLine formats collected errors for the one line the user sees.
func oneLine(errs []error) string {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

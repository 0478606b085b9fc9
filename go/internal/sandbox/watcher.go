package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// The sync watcher of an auto-commit or auto-idle sandbox is this same
// program run as `keystone agent watch <name>`, detached like the runner, its
// pid in state/watch.pid and its output in state/watch.log. It works on the
// host only (the guest never connects out) and dies with the sandbox.

// StartWatcher starts the sync watcher when the sandbox's sync mode needs one.
func (e *Env) StartWatcher(sb *Sandbox) error {
	if sb.Declared || (sb.SyncMode != "auto-commit" && sb.SyncMode != "auto-idle") {
		return nil
	}
	if pid, _ := e.watcherPID(sb); pid != 0 {
		return nil // already watching
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot start the sync watcher: %w", err)
	}
	logf, err := os.OpenFile(sb.Dir.Path(statedir.WatchLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "agent", "watch", sb.Name)
	cmd.Dir = sb.Dir.State()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start the sync watcher: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return atomicfile.Write(sb.Dir.Path(statedir.WatchPID), fmt.Appendf(nil, "%d\n", pid), 0o600)
}

// StopWatcher stops the sandbox's sync watcher, if one runs. SIGTERM lets it
// finish the ref update in progress; it never leaves half-moved refs.
func (e *Env) StopWatcher(sb *Sandbox) error {
	pid, path := e.watcherPID(sb)
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if runner.Inspect(pid, sb.Dir.State()) != runner.Runner {
			return os.Remove(path)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return os.Remove(path)
}

// watcherPID returns the watcher's pid when it still runs (its working
// directory is the state dir, as for the runner).
func (e *Env) watcherPID(sb *Sandbox) (int, string) {
	path := sb.Dir.Path(statedir.WatchPID)
	pid, err := runner.ReadPIDFile(path)
	if err != nil || pid == 0 || runner.Inspect(pid, sb.Dir.State()) != runner.Runner {
		return 0, path
	}
	return pid, path
}

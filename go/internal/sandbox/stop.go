package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
)

// ErrDeclared refuses lifecycle changes that belong to the NixOS configuration.
var ErrDeclared = errors.New("declared in the NixOS configuration")

// Stop shuts the sandbox's VM down and says how, or that it was not running.
// A stale pid file is removed; a pid that now belongs to another program is
// never signalled.
func (e *Env) Stop(sb *Sandbox) (string, error) {
	if sb.Declared {
		if out, err := exec.Command("systemctl", "stop", "--", sb.Unit).CombinedOutput(); err != nil {
			return "", fmt.Errorf("failed to stop %s: %v: %s", sb.Unit, err, out)
		}
		return "stopped " + sb.Unit, nil
	}
	lk, err := lockSandbox(sb)
	if err != nil {
		return "", err
	}
	defer lk.Unlock()
	return e.stopLocked(sb)
}

func (e *Env) stopLocked(sb *Sandbox) (string, error) {
	if err := e.StopDaemon(sb); err != nil {
		e.progressf("keystone: warning: stopping the host daemon: %v", err)
	}
	pid, err := runner.ReadPID(sb.Dir.State())
	if err != nil {
		return "", err
	}
	if pid == 0 {
		return "was not running", nil
	}
	switch runner.Inspect(pid, sb.Dir.State()) {
	case runner.Gone:
		return "was not running (removed a stale pid file)", runner.RemovePID(sb.Dir.State())
	case runner.Stranger:
		return "was not running (pid file pointed at another program; removed it)", runner.RemovePID(sb.Dir.State())
	}
	how, err := runner.Stop(e.runnerDir(sb), sb.Dir.State(), sb.runnerEnv(e.keystone()), pid, nil, e.Timeouts.withDefaults().Stop)
	if err != nil {
		return "", fmt.Errorf("failed to stop sandbox %q: %w", sb.Name, err)
	}
	return how, nil
}

// Destroy stops the sandbox and removes its state and registry entry. The
// host project is never touched: it is not under the state directory.
func (e *Env) Destroy(sb *Sandbox) error {
	if sb.Declared {
		return fmt.Errorf("sandbox %q is %w: remove keystone.agent.sandboxes.%s there", sb.Name, ErrDeclared, sb.Name)
	}
	lk, err := lockSandbox(sb)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if _, err := e.stopLocked(sb); err != nil {
		return err
	}
	// The directory goes first: on a full disk that frees the space the
	// registry's rewrite needs.
	if err := removeDir(sb); err != nil {
		return err
	}
	if err := e.Registry.Update(func(tx *registry.Tx) error { tx.Delete(sb.Name); return nil }); err != nil {
		return err
	}
	// Removed while held, which is harmless: the next command creates a new one.
	return os.Remove(lk.Path())
}

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// The host daemon of a sandbox (package hostd) is this same program run as
// `keystone agent hostd <name>`, detached like the runner, its pid in
// state/hostd.pid and its output in state/hostd.log. It works on the host only
// (the guest never connects out to it except through what a service exposes
// to that one guest) and ends with the sandbox's VM. Declared sandboxes run it
// as a systemd unit instead.

// DaemonReadyTimeout bounds the wait for the daemon's services to be ready.
const DaemonReadyTimeout = 30 * time.Second

// StartDaemon starts the sandbox's host daemon, replacing one that still
// runs (it holds an earlier start's credentials and runner), and waits until
// it reports every service ready. creds reach the daemon over a pipe only:
// never argv, its environment or a file.
func (e *Env) StartDaemon(sb *Sandbox, creds credentials.Set) error {
	if sb.Declared {
		return nil
	}
	if err := e.StopDaemon(sb); err != nil {
		return err
	}
	self := e.keystone()
	logPath := sb.Dir.Path(statedir.DaemonLog)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cr, cw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "agent", "hostd", "--state-dir", string(e.Root), sb.Name)
	cmd.Dir = sb.Dir.State()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w, cr} // fd 3, fd 4
	cmd.Env = append(credentials.Scrub(os.Environ()), hostd.ReadyFDEnv+"=3", hostd.CredentialsFDEnv+"=4", DeclaredEnv+"="+e.Declared)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	cr.Close()
	if err != nil {
		cw.Close()
		return fmt.Errorf("cannot start the host daemon: %w", err)
	}
	go func() { // a pipe holds 64 KiB; the daemon reads it while starting
		cw.Write(credentials.Encode(creds))
		cw.Close()
	}()
	pid := cmd.Process.Pid
	// Reaped by whoever outlives it: start returns long before it ends.
	_ = cmd.Process.Release()
	if err := atomicfile.Write(sb.Dir.Path(statedir.DaemonPID), fmt.Appendf(nil, "%d\n", pid), 0o600); err != nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		return err
	}
	_ = r.SetReadDeadline(time.Now().Add(DaemonReadyTimeout))
	line, err := bufio.NewReader(r).ReadString('\n')
	if line == hostd.ReadyMessage {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("its services were not ready after %v", DaemonReadyTimeout)
	} else {
		err = errors.New("it ended before its services were ready")
	}
	_ = e.StopDaemon(sb)
	return &BootError{Msg: fmt.Sprintf("the host daemon of %q failed: %v (see %s)", sb.Name, err, logPath),
		Log: tail(logPath, 10)}
}

// StopDaemon stops the sandbox's host daemon, if one runs. SIGTERM lets each
// service finish what it must (the watcher its ref update in progress).
func (e *Env) StopDaemon(sb *Sandbox) error {
	pid, path := e.daemonPID(sb)
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

// daemonPID returns the daemon's pid when it still runs (its working
// directory is the state dir, as for the runner).
func (e *Env) daemonPID(sb *Sandbox) (int, string) {
	path := sb.Dir.Path(statedir.DaemonPID)
	pid, err := runner.ReadPIDFile(path)
	if err != nil || pid == 0 || runner.Inspect(pid, sb.Dir.State()) != runner.Runner {
		return 0, path
	}
	return pid, path
}

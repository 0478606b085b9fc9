package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// The host daemon of a sandbox (package hostd) is this same program run as
// `keystone agent hostd <name>`, detached like the runner, its pid in
// state/hostd.pid and its output in state/hostd.log. It works on the host only
// (the guest never connects out to it except through what a service exposes
// to that one guest) and ends with the sandbox's VM. Declared sandboxes run it
// as a systemd unit instead.

// DaemonReadyTimeout bounds the wait for the daemon's services to be ready
// once SSH answers; the wait as a whole is Timeouts.Ready longer, since the
// daemon's SSH connection is what finds the booting guest's sshd.
const DaemonReadyTimeout = 30 * time.Second

// StartDaemon starts the sandbox's host daemon for the boot of vm, whose
// console begins at consoleFrom in console.log, replacing one that still runs
// (it holds an earlier start's credentials and runner), and waits until the
// daemon reports every service ready: its SSH connection to the guest made
// (the proof that the sandbox is reachable, with its pinned host key), the
// other services started. It watches vm meanwhile, and stops the daemon when
// it fails. creds reach the daemon over a pipe only: never argv, its
// environment or a file.
func (e *Env) StartDaemon(sb *Sandbox, creds credentials.Set, vm *runner.Process, consoleFrom int64) error {
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
	ready := e.Timeouts.withDefaults().Ready
	cmd := exec.Command(self, "agent", "hostd", "--state-dir", string(e.Root),
		"--console-from", strconv.FormatInt(consoleFrom, 10), "--ready-timeout", ready.String(), sb.Name)
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
	pid := cmd.Process.Pid
	// Reaped by whoever outlives it: start returns long before it ends.
	_ = cmd.Process.Release()
	if err := atomicfile.Write(sb.Dir.Path(statedir.DaemonPID), fmt.Appendf(nil, "%d\n", pid), 0o600); err != nil {
		cw.Close() // the daemon exits: it was not recorded
		_ = syscall.Kill(pid, syscall.SIGTERM)
		return err
	}
	// Only now may the daemon go on (hostd.CredentialsRecorded): a start
	// killed before this line closes the pipe short, and the daemon exits.
	go func() { // a pipe holds 64 KiB; the daemon reads it while starting
		cw.Write(append(credentials.Encode(creds), hostd.CredentialsRecorded...))
		cw.Close()
	}()
	if err := awaitReady(r, vm.Done(), ready+DaemonReadyTimeout); err != nil {
		_ = e.StopDaemon(sb)
		return &BootError{Msg: fmt.Sprintf("sandbox %q did not become ready: %v (see %s)", sb.Name, err, logPath),
			Log: tail(consolePath(sb), 15), Err: err}
	}
	return nil
}

// awaitReady reads the daemon's one line on r (package hostd), until the VM
// exits or the timeout passes.
func awaitReady(r *os.File, exited <-chan struct{}, timeout time.Duration) error {
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		switch {
		case s == hostd.ReadyMessage:
			return nil
		case strings.HasPrefix(s, hostd.FailedPrefix):
			return errors.New(strings.TrimSpace(strings.TrimPrefix(s, hostd.FailedPrefix)))
		}
		return errors.New("the host daemon ended before its services were ready")
	case <-exited:
		return fmt.Errorf("%w during boot", sshconn.ErrVMExited)
	case <-time.After(timeout):
		return fmt.Errorf("not reachable after %v: %w", timeout, context.DeadlineExceeded)
	}
}

// StopDaemon stops the sandbox's host daemon, if one runs. SIGTERM lets each
// service finish what it must (the watcher its ref update in progress).
func (e *Env) StopDaemon(sb *Sandbox) error {
	pid, path := sb.daemonPID()
	if pid == 0 {
		return nil
	}
	// Its log says who stopped it: a daemon that ends unasked is a bug.
	if f, err := os.OpenFile(sb.Dir.Path(statedir.DaemonLog), os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "%s stopped by pid %d: %s\n", time.Now().Format(time.RFC3339), os.Getpid(), strings.Join(os.Args, " "))
		f.Close()
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
func (sb *Sandbox) daemonPID() (int, string) {
	path := sb.Dir.Path(statedir.DaemonPID)
	pid, err := runner.ReadPIDFile(path)
	if err != nil || pid == 0 || runner.Inspect(pid, sb.Dir.State()) != runner.Runner {
		return 0, path
	}
	return pid, path
}

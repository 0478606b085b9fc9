package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tidwall/gjson"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// StopOptions bounds each step of Stop; a zero field takes its default.
type StopOptions struct {
	Grace time.Duration // after the graceful request, before SIGTERM (default 20 s: a NixOS guest's shutdown)
	Term  time.Duration // after SIGTERM, before SIGKILL (default 5 s)
}

// failedRequestGrace is how long a runner whose powerdown request failed
// is given to be gone anyway before it is sent SIGTERM.
const failedRequestGrace = time.Second

func (o StopOptions) withDefaults() StopOptions {
	if o.Grace <= 0 {
		o.Grace = 20 * time.Second
	}
	if o.Term <= 0 {
		o.Term = 5 * time.Second
	}
	return o
}

// Stop shuts the runner down: bin/microvm-shutdown when the runner has one,
// else QMP system_powerdown; then SIGTERM, then SIGKILL to the whole process
// group. It returns once the process is gone, and removes the pid file.
// done may be nil when the runner is not this process's child.
func Stop(dir, stateDir string, env []string, pid int, done <-chan struct{}, o StopOptions) (how string, err error) {
	o = o.withDefaults()
	gone := func(d time.Duration) bool { return waitGone(pid, stateDir, done, d) }
	// why the graceful way did not work, said with the outcome
	why := fmt.Sprintf("the guest did not power off within %v", o.Grace)
	if err := requestPowerdown(dir, stateDir, env); err != nil {
		why = err.Error()
		// A guest that powers off at once can take the QMP socket away
		// under the request's last write: the request failed, yet worked.
		if gone(failedRequestGrace) {
			return "shut down", cleanUp(pid, stateDir)
		}
	} else if gone(o.Grace) || shuttingDown(stateDir, gone, o.Grace) {
		return "shut down", cleanUp(pid, stateDir)
	}
	if signalGroup(pid, syscall.SIGTERM); gone(o.Term) {
		how = "terminated (" + why + ")"
	} else {
		signalGroup(pid, syscall.SIGKILL)
		if !gone(5 * time.Second) {
			return "", fmt.Errorf("runner process %d is still alive after SIGKILL", pid)
		}
		how = "killed (" + why + "; SIGTERM did not end it)"
	}
	return how, cleanUp(pid, stateDir)
}

// cleanUp takes the rest of the gone runner's group with it (virtiofsd,
// helpers), gives init a moment to reap them, and removes the pid file.
func cleanUp(pid int, stateDir string) error {
	if syscall.Kill(-pid, syscall.SIGKILL) == nil {
		for i := 0; i < 40 && syscall.Kill(-pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return RemovePID(stateDir)
}

// shuttingDown gives a guest that is still printing on its console after
// Grace (a shutdown slowed down by a loaded host: software emulation gets
// what CPU is left) more time, as long as it keeps printing, up to twice
// Grace more; it reports whether the runner was gone by then.
func shuttingDown(stateDir string, gone func(time.Duration) bool, grace time.Duration) bool {
	const quiet = 5 * time.Second // no console output for this long: not making progress
	console := filepath.Join(stateDir, statedir.ConsoleLog)
	for deadline := time.Now().Add(2 * grace); time.Now().Before(deadline); {
		fi, err := os.Stat(console)
		if err != nil || time.Since(fi.ModTime()) > quiet {
			return false
		}
		if gone(quiet) {
			return true
		}
	}
	return false
}

func signalGroup(pid int, sig syscall.Signal) {
	if syscall.Kill(-pid, sig) != nil {
		_ = syscall.Kill(pid, sig)
	}
}

func waitGone(pid int, stateDir string, done <-chan struct{}, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if done == nil && Inspect(pid, stateDir) != Runner {
			return true
		}
		select {
		case <-done:
			return true
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

func requestPowerdown(dir, stateDir string, env []string) error {
	bin := filepath.Join(dir, ShutdownBin)
	if _, err := os.Stat(bin); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Dir, cmd.Env = stateDir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s failed: %v: %s", ShutdownBin, err, bytes.Join(bytes.Fields(out), []byte(" ")))
		}
		return nil
	}
	return qmpPowerdown(stateDir)
}

// qmpPowerdown sends system_powerdown over state/qmp.sock. The socket is
// reached through /proc/self/fd so a long state path cannot exceed the
// 108-byte limit of a unix socket address.
func qmpPowerdown(stateDir string) error {
	d, err := os.Open(stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), statedir.QMPSocket)
	c, err := net.DialTimeout("unix", addr, 2*time.Second)
	if err != nil {
		return fmt.Errorf("no QMP socket: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	read := func() (string, error) {
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	if _, err := read(); err != nil { // greeting
		return err
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"system_powerdown"}`} {
		if _, err := c.Write([]byte(cmd + "\n")); err != nil {
			return err
		}
		reply, err := read()
		if err != nil {
			return err
		}
		if e := gjson.Get(reply, "error.desc"); e.Exists() {
			return errors.New("QMP: " + e.String())
		}
	}
	return nil
}

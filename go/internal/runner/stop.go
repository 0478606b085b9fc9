package runner

import (
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
	if err := requestPowerdown(dir, stateDir, env); err == nil && gone(o.Grace) {
		how = "shut down"
	} else if signalGroup(pid, syscall.SIGTERM); gone(o.Term) {
		how = "terminated"
	} else {
		signalGroup(pid, syscall.SIGKILL)
		if !gone(5 * time.Second) {
			return "", fmt.Errorf("runner process %d is still alive after SIGKILL", pid)
		}
		how = "killed"
	}
	// The runner is gone; take the rest of its group with it (virtiofsd,
	// helpers) and give init a moment to reap them.
	if syscall.Kill(-pid, syscall.SIGKILL) == nil {
		for i := 0; i < 40 && syscall.Kill(-pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return how, RemovePID(stateDir)
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
			return fmt.Errorf("%s failed: %v: %s", ShutdownBin, err, out)
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

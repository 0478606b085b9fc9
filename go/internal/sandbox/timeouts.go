package sandbox

import (
	"time"

	"github.com/keystone-agent/keystone/internal/runner"
)

// Timeouts bound the lifecycle's waits. A zero field takes its default, so
// tests pass short ones through Env instead of changing package variables.
type Timeouts struct {
	// Ready bounds the wait for SSH after the runner starts (default 3 min:
	// a first boot under software emulation on a loaded machine).
	Ready time.Duration
	// PortLock bounds the wait for another start's port lock (default 1 min;
	// a start holds it only until its hypervisor has bound the port).
	PortLock time.Duration
	// Stop bounds each step of a graceful stop (runner.StopOptions' defaults).
	Stop runner.StopOptions
	// Undo bounds each step of stopping the VM of a failed start (default 2 s).
	Undo runner.StopOptions
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Ready <= 0 {
		t.Ready = 3 * time.Minute
	}
	if t.PortLock <= 0 {
		t.PortLock = time.Minute
	}
	if t.Undo == (runner.StopOptions{}) {
		t.Undo = runner.StopOptions{Grace: 2 * time.Second, Term: 2 * time.Second}
	}
	return t
}

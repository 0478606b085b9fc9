package sandbox

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// Defaults and minimums from the user guide ("Default Resources").
const (
	DefaultMemoryMB = 8192
	MinMemoryMB     = 2048
	DefaultVCPUs    = 4
	MinVCPUs        = 1
	// MaxVCPUs is qemu's limit for the machine types we use.
	MaxVCPUs = 255
	// MaxMemoryMB guards against typos such as an extra zero digit.
	MaxMemoryMB = 1 << 22 // 4 TiB
	FirstPort   = 2223
)

// Run-time network values of the runner contract (docs/runner-contract.md).
const (
	// DefaultBridge is the host bridge of `--network bridge`
	// (KEYSTONE_BRIDGE); another bridge needs a declared sandbox.
	DefaultBridge = "br0"
	// tapPrefix starts a sandbox's tap device name, as lib/default.nix ifName does.
	tapPrefix = "ks-"
	// maxIfName is the kernel's limit on interface names (IFNAMSIZ - 1).
	maxIfName = 15
)

// TapInterface is the tap device `--network tap` uses (KEYSTONE_TAP_INTERFACE):
// "ks-<name>", made by the user for themselves before the start.
func TapInterface(name string) (string, error) {
	tap := tapPrefix + name
	if len(tap) > maxIfName {
		return "", usagef("network mode \"tap\" uses the tap device %q, longer than the kernel's %d characters: choose a shorter --name", tap, maxIfName)
	}
	return tap, nil
}

// Spec is what `keystone agent start` asks for.
type Spec struct {
	Project  string // a path inside the project's git repository
	Name     string // empty: derived from the project directory
	MemoryMB int
	VCPUs    int
	Nested   bool
	Network  string
	SyncMode string
	Runner   string // prebuilt runner directory; empty: the registry's, else nix build
	Fresh    bool
	// Egress changes the remembered egress settings (docs/egress.md).
	Egress egress.Changes
	// Credentials are the keys from the environment of `start`; the
	// credentials file adds the others. Only the host daemon gets them.
	Credentials credentials.Set
	// Agent runs in the sandbox's session (package agents); empty keeps the
	// sandbox's choice, NoAgent drops it.
	Agent string
}

// NoAgent as Spec.Agent removes the sandbox's agent.
const NoAgent = "none"

// UsageError is bad input caught before anything is created.
type UsageError struct {
	Msg  string
	hint string
}

func (e *UsageError) Error() string { return e.Msg }

// Hint says how to give a good value, when there is more to say than Msg.
func (e *UsageError) Hint() string { return e.hint }

// HintError is an error with a line that says what to do about it.
type HintError struct {
	Err  error
	hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }
func (e *HintError) Hint() string  { return e.hint }

func withHint(err error, hint string, a ...any) error {
	return &HintError{Err: err, hint: fmt.Sprintf(hint, a...)}
}

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// Validate checks every value against the guide's limits.
func (s Spec) Validate() error {
	if s.Name != "" {
		if err := names.Validate(s.Name); err != nil {
			return &UsageError{Msg: err.Error()}
		}
	}
	switch {
	case s.MemoryMB < MinMemoryMB:
		return usagef("--memory %d is below the minimum of %d MB", s.MemoryMB, MinMemoryMB)
	case s.MemoryMB > MaxMemoryMB:
		return usagef("--memory %d is more than %d MB", s.MemoryMB, MaxMemoryMB)
	case s.VCPUs < MinVCPUs:
		return usagef("--vcpus %d is below the minimum of %d", s.VCPUs, MinVCPUs)
	case s.VCPUs > MaxVCPUs:
		return usagef("--vcpus %d is more than %d", s.VCPUs, MaxVCPUs)
	case !slices.Contains(runner.Networks, s.Network):
		return usagef("unknown network mode %q (choose %s)", s.Network, strings.Join(runner.Networks, ", "))
	case !slices.Contains(syncwatch.Modes, s.SyncMode):
		return usagef("unknown sync mode %q (choose %s)", s.SyncMode, strings.Join(syncwatch.Modes, ", "))
	}
	if s.Agent != "" && s.Agent != NoAgent {
		m, err := agents.Load()
		if err != nil {
			return err
		}
		if _, err := m.Agent(s.Agent); err != nil {
			return usagef("--agent: %v", err)
		}
	}
	if s.Egress.Mode != "" {
		if err := egress.ValidateMode(s.Egress.Mode); err != nil {
			return &UsageError{Msg: err.Error()}
		}
	}
	if err := s.Egress.Apply(egress.Settings{}).Validate(); err != nil {
		return &UsageError{Msg: err.Error()}
	}
	return nil
}

// agentFor is the agent a start gives the sandbox: the one asked for, else
// the one it had.
func (s Spec) agentFor(old registry.Entry) string {
	switch s.Agent {
	case "":
		return old.Agent
	case NoAgent:
		return ""
	}
	return s.Agent
}

// Package nixbuild renders a sandbox's flake and builds its runner with
// `nix build` from state/flake, a directory that holds only flake.nix and
// flake.lock (the source nix copies into the store).
//
// The rendered flake is thin: it pins the keystone flake the helper was built
// from (DefaultFlake), imports that flake's nixosModules.guest (the same
// guest.nix declared sandboxes run) and exposes packages.<system>.runner. It
// holds no per-sandbox values: name, memory, ports and paths reach the runner
// at run time (docs/runner-contract.md), so every sandbox with the same
// options shares one build.
//
// nixbuild never runs anything but the nix program, always with an argv list,
// and writes only state/build.log (nix itself writes state/flake/flake.lock
// and the state/runner link; the caller writes state/flake/flake.nix).
package nixbuild

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/runner"
)

// FlakeEnv names the environment variable with the keystone flake reference
// rendered into every sandbox's flake.nix. The flake's package sets it in
// its wrapper to the flake's own source, by store path and narHash, so a
// build needs no network when the store already holds that source. It is
// not stamped in with -ldflags: the Go build would then change with every
// commit of the repository, docs included.
const FlakeEnv = "KEYSTONE_AGENT_FLAKE"

// PublishedFlake is the flake used when FlakeEnv is unset (development builds).
const PublishedFlake = "github:keystone-agent/keystone"

// DefaultFlake is $KEYSTONE_AGENT_FLAKE, else PublishedFlake.
func DefaultFlake() string {
	if f := os.Getenv(FlakeEnv); f != "" {
		return f
	}
	return PublishedFlake
}

// System is the only Nix system keystone builds guests for (lib/default.nix
// `systems`): the guest's CPU flags and kvm modules are x86-specific.
const System = "x86_64-linux"

// testOnlyGOARCH is the architecture this helper runs on.
var testOnlyGOARCH = runtime.GOARCH

// Networks an imperative runner supports. tap needs a tap device the user
// made for themselves (KEYSTONE_TAP_INTERFACE), bridge the setuid
// qemu-bridge-helper; macvtap needs host units, so only declared sandboxes
// have it.
var Networks = []string{runner.NetworkUser, runner.NetworkTap, runner.NetworkBridge}

// Params are the values rendered into a sandbox's flake.nix. Everything
// else, the bridge and tap device included, reaches the runner at run time.
type Params struct {
	// Name is the sandbox name; it appears only in the header comment.
	Name string
	// Flake is the keystone flake to pin; empty means DefaultFlake().
	Flake string
	// System is the Nix system; empty means System.
	System string
	// Agent is the agent of the sandbox's session (package agents), empty
	// for none. The guest installs every free agent anyway; an unfree one
	// is installed only as the session's agent, because `start --agent` named it.
	Agent string
	// Unfree is set by normalize when Agent's licence is unfree: the flake
	// then accepts it (keystone.guest.allowUnfreeAgents).
	Unfree bool
	// Network is one of Networks; empty means "user".
	Network string
}

var (
	flakeRefPattern = regexp.MustCompile(`^[A-Za-z0-9+._:/?=&~%@-]+$`)
)

// normalize fills defaults and checks every value, so that the template only
// ever sees strings that are safe inside a Nix string literal.
func (p Params) normalize() (Params, error) {
	if p.Flake == "" {
		p.Flake = DefaultFlake()
	}
	if p.System == "" {
		if testOnlyGOARCH != "amd64" {
			return p, fmt.Errorf("this machine is %s: keystone builds %s guests only, which need an x86_64 host", testOnlyGOARCH, System)
		}
		p.System = System
	}
	if p.Network == "" {
		p.Network = runner.NetworkUser
	}
	switch {
	case names.Validate(p.Name) != nil:
		return p, names.Validate(p.Name)
	case !flakeRefPattern.MatchString(p.Flake):
		return p, fmt.Errorf("invalid keystone flake reference %q", p.Flake)
	case p.System != System:
		return p, fmt.Errorf("unsupported system %q: keystone builds %s guests only", p.System, System)
	case !slices.Contains(Networks, p.Network):
		return p, fmt.Errorf("network mode %q needs a declared sandbox (keystone.agent.sandboxes in the NixOS configuration); imperative sandboxes use %s", p.Network, strings.Join(Networks, ", "))
	}
	if p.Agent != "" {
		m, err := agents.Load()
		if err != nil {
			return p, err
		}
		a, err := m.Agent(p.Agent)
		if err != nil {
			return p, err
		}
		p.Unfree = m.Packages[a.Package].License == "unfree"
	}
	return p, nil
}

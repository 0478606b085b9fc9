// Package nixbuild renders a sandbox's state/flake.nix and builds its runner
// with `nix build`.
//
// The rendered flake is thin: it pins the keystone flake the helper was built
// from (KeystoneFlake), imports that flake's nixosModules.guest (the same
// guest.nix declared sandboxes run) and exposes packages.<system>.runner. It
// holds no per-sandbox values: name, memory, ports and paths reach the runner
// at run time (docs/runner-contract.md), so every sandbox with the same
// options shares one build.
//
// nixbuild never runs anything but the nix program, always with an argv list,
// and writes only state/build.log (nix itself writes state/flake.lock and the
// state/runner link).
package nixbuild

import (
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/keystone-agent/keystone/internal/agents"
)

// KeystoneFlake is the flake reference rendered into every state/flake.nix.
// The flake's package sets it to its own source, by store path and narHash
// (-ldflags -X github.com/keystone-agent/keystone/internal/nixbuild.KeystoneFlake=…),
// so a build needs no network when the store already holds that source.
// Development builds fall back to the published flake.
var KeystoneFlake = "github:keystone-agent/keystone"

// Networks an imperative runner supports; tap and macvtap need host units and
// are only available to declared sandboxes.
var Networks = []string{"user", "bridge"}

// Params are the values rendered into state/flake.nix.
type Params struct {
	// Name is the sandbox name; it appears only in the header comment.
	Name string
	// Flake is the keystone flake to pin; empty means KeystoneFlake.
	Flake string
	// System is the Nix system; empty means the one this binary runs on.
	System string
	// Agent is the agent of the sandbox's session (package agents), empty
	// for none. The guest installs every free agent anyway; an unfree one
	// is installed only as the session's agent, because `start --agent` named it.
	Agent string
	// Unfree is set by normalize when Agent's licence is unfree: the flake
	// then accepts it (keystone.guest.allowUnfreeAgents).
	Unfree bool
	// Network is "user" (default when empty) or "bridge".
	Network string
	// Bridge is the host bridge for Network "bridge"; empty means "br0".
	Bridge string
}

var (
	flakeRefPattern = regexp.MustCompile(`^[A-Za-z0-9+._:/?=&~%@-]+$`)
	bridgePattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	namePattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

// normalize fills defaults and checks every value, so that the template only
// ever sees strings that are safe inside a Nix string literal.
func (p Params) normalize() (Params, error) {
	if p.Flake == "" {
		p.Flake = KeystoneFlake
	}
	if p.System == "" {
		p.System = hostSystem()
	}
	if p.Network == "" {
		p.Network = "user"
	}
	if p.Network == "bridge" && p.Bridge == "" {
		p.Bridge = "br0"
	}
	switch {
	case !namePattern.MatchString(p.Name):
		return p, fmt.Errorf("invalid sandbox name %q", p.Name)
	case !flakeRefPattern.MatchString(p.Flake):
		return p, fmt.Errorf("invalid keystone flake reference %q", p.Flake)
	case p.System != "x86_64-linux" && p.System != "aarch64-linux":
		return p, fmt.Errorf("unsupported system %q (want x86_64-linux or aarch64-linux)", p.System)
	case !slices.Contains(Networks, p.Network):
		return p, fmt.Errorf("network mode %q needs a declared sandbox (keystone.agent.sandboxes in the NixOS configuration); imperative sandboxes use %s", p.Network, strings.Join(Networks, " or "))
	case p.Network == "bridge" && !bridgePattern.MatchString(p.Bridge):
		return p, fmt.Errorf("invalid bridge name %q", p.Bridge)
	case p.Network != "bridge" && p.Bridge != "":
		return p, fmt.Errorf("a bridge (%q) is only used with network mode \"bridge\"", p.Bridge)
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

func hostSystem() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64-linux"
	}
	return "x86_64-linux"
}

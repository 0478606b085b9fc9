// Package egress owns a sandbox's egress policy: the modes (allowlist, open,
// none), the default allowlist, the entries users add with --allow, and the
// two checks every request of the guest passes through the host proxy: may
// the guest name this host and port, and may the proxy dial this address.
//
// It decides only; it never resolves names, dials or reads a request (package
// proxy does, and asks here). An address that reaches the host or its networks
// (loopback, private, link-local, …) is refused unless an entry names that
// address, whatever name the guest asked for: DNS cannot widen the policy.
package egress

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
)

// Modes of --egress.
const (
	// Allowlist: the default list plus the sandbox's own entries.
	Allowlist = "allowlist"
	// Open: any public host; addresses of the host's networks still need an entry.
	Open = "open"
	// None: only the sandbox's own entries (none by default). The agents'
	// provider routes are not egress the guest chooses and always work.
	None = "none"
)

// Modes lists the modes in the order the help text gives them.
var Modes = []string{Allowlist, Open, None}

// DefaultMode is the mode of a sandbox that names none.
const DefaultMode = Allowlist

// DefaultModeFor is the mode a new sandbox gets in a network mode: only
// user networking can enforce a policy (CheckNetwork), so the others are open.
func DefaultModeFor(network string) string {
	if network == "user" {
		return DefaultMode
	}
	return Open
}

// DefaultAllow is the allowlist of mode allowlist besides the sandbox's own
// entries: the agents' APIs and what an agent needs to install dependencies
// and read code. docs/egress.md lists it; keep the two in step.
var DefaultAllow = []string{
	// the agents' APIs (with the placeholder key: the key is added only on
	// the proxy's provider routes)
	"api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com",
	// npm, yarn
	"registry.npmjs.org", "registry.yarnpkg.com",
	// PyPI
	"pypi.org", "files.pythonhosted.org",
	// crates.io
	"crates.io", "static.crates.io", "index.crates.io",
	// Go modules
	"proxy.golang.org", "sum.golang.org",
	// code hosts
	"github.com", "api.github.com", "codeload.github.com", "*.githubusercontent.com",
	"gitlab.com",
	// Nix binary cache (NixOS guests)
	"cache.nixos.org",
}

// Settings is a sandbox's egress configuration as declared (the registry,
// the NixOS module). JSON field names are an API.
type Settings struct {
	Mode  string   `json:"mode"`
	Allow []string `json:"allow,omitempty"`
	// Upstreams replaces a provider's API base URL (https only): a company
	// gateway, or a test's stub.
	Upstreams map[string]string `json:"upstreams,omitempty"`
	// UpstreamCA is a PEM file of extra certificate authorities trusted for
	// the upstreams, besides the system's.
	UpstreamCA string `json:"upstreamCA,omitempty"`
}

// WithDefaults fills an empty mode (a sandbox created before egress existed).
func (s Settings) WithDefaults() Settings {
	if s.Mode == "" {
		s.Mode = DefaultMode
	}
	return s
}

// ValidateMode checks a mode name.
func ValidateMode(mode string) error {
	if !slices.Contains(Modes, mode) {
		return fmt.Errorf("unknown egress mode %q (choose %s)", mode, strings.Join(Modes, ", "))
	}
	return nil
}

// Validate checks the mode and every entry.
func (s Settings) Validate() error {
	if err := ValidateMode(s.WithDefaults().Mode); err != nil {
		return err
	}
	for _, a := range s.Allow {
		if _, err := ParseEntry(a); err != nil {
			return err
		}
	}
	for name, u := range s.Upstreams {
		if err := credentials.ValidateUpstream(name, u); err != nil {
			return err
		}
	}
	return nil
}

// Changes are the egress flags of one `start`: what is set replaces the
// sandbox's remembered settings, what is not keeps them.
type Changes struct {
	Mode          string // "": keep
	Allow         []string
	SetAllow      bool // --allow given: Allow replaces the remembered entries
	Upstreams     map[string]string
	SetUpstreams  bool
	UpstreamCA    string
	SetUpstreamCA bool
}

// Apply returns old with the changes made.
func (c Changes) Apply(old Settings) Settings {
	s := old
	if c.Mode != "" {
		s.Mode = c.Mode
	}
	if c.SetAllow {
		s.Allow = append([]string(nil), c.Allow...)
	}
	if c.SetUpstreams {
		s.Upstreams = c.Upstreams
	}
	if c.SetUpstreamCA {
		s.UpstreamCA = c.UpstreamCA
	}
	return s.WithDefaults()
}

// Add returns s with entries added (those not already there, as written by
// ParseEntry), for `keystone agent allow`.
func (s Settings) Add(entries ...string) (Settings, error) {
	out := s
	out.Allow = append([]string(nil), s.Allow...)
	for _, a := range entries {
		e, err := ParseEntry(a)
		if err != nil {
			return s, err
		}
		if !slices.Contains(out.Allow, e.String()) {
			out.Allow = append(out.Allow, e.String())
		}
	}
	return out, nil
}

// Remove returns s without the entries (compared as ParseEntry writes them).
func (s Settings) Remove(entries ...string) (Settings, error) {
	out := s
	out.Allow = nil
	drop := map[string]bool{}
	for _, a := range entries {
		e, err := ParseEntry(a)
		if err != nil {
			return s, err
		}
		drop[e.String()] = true
	}
	for _, a := range s.Allow {
		if e, err := ParseEntry(a); err != nil || !drop[e.String()] {
			out.Allow = append(out.Allow, a)
		}
	}
	return out, nil
}

// CheckNetwork refuses a policy the network mode cannot enforce: only in
// qemu's user networking is the proxy the guest's one way out. In tap,
// macvtap and bridge modes the guest has a route of its own, so only open
// is honest there (the proxy still adds the keys).
func CheckNetwork(network, mode string) error {
	if network == "user" || mode == Open {
		return nil
	}
	return fmt.Errorf("egress %s needs --network user: in %s networking the guest has its own route that the host's proxy cannot filter (use --egress open, or --network user)", mode, network)
}

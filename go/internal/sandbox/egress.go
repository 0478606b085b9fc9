package sandbox

import (
	"fmt"
	"os"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// credentials are the keys the sandbox's proxy gets: the credentials file's,
// overridden by those in the environment of `start` (fromEnv). A file others
// can read is refused before anything starts.
func (e *Env) credentials(fromEnv credentials.Set) (credentials.Set, error) {
	file, _, err := credentials.ReadFile(e.Root.Credentials())
	if err != nil {
		return credentials.Set{}, err
	}
	return file.Merge(fromEnv), nil
}

// reportCredentials says which keys the proxy holds, by name.
func (e *Env) reportCredentials(c credentials.Set) {
	if c.Len() == 0 {
		e.progressf("No API keys for the sandbox's proxy (set ANTHROPIC_API_KEY and others in the environment or in %s)", e.Root.Credentials())
		return
	}
	e.progressf("The proxy adds %s on the host; the guest gets placeholders", strings.Join(c.Names(), ", "))
}

// proxyEnv is the runner contract's part for the proxy (docs/runner-contract.md):
// the egress mode (a runner restricts the guest's network unless open), the
// guest's address of the proxy and the command qemu runs per connection.
func (sb *Sandbox) proxyEnv(keystone string) []string {
	return []string{
		"KEYSTONE_EGRESS=" + sb.Egress.WithDefaults().Mode,
		"KEYSTONE_PROXY_ADDRESS=" + proxy.GuestAddress,
		"KEYSTONE_PROXY_COMMAND=" + proxy.RelayCommand(keystone, sb.Name, sb.Dir.Path(statedir.ProxySocket)),
	}
}

// keystone is the program that runs as the host daemon and the proxy relay.
func (e *Env) keystone() string {
	if e.Keystone != "" {
		return e.Keystone
	}
	self, err := os.Executable()
	if err != nil {
		return "keystone"
	}
	return self
}

// EgressSettings is the sandbox's egress configuration as declared now (the
// registry, or declared.json), for the host daemon's proxy, which asks again
// whenever the file changes.
func (e *Env) EgressSettings(name string) (egress.Settings, error) {
	sb, err := e.Get(name)
	if err != nil {
		return egress.Settings{}, err
	}
	return sb.Egress.WithDefaults(), nil
}

// Allow adds (or, with remove, removes) egress entries of an imperative
// sandbox in the registry; its running proxy reads them within a second.
func (e *Env) Allow(name string, entries []string, remove bool) (egress.Settings, error) {
	sb, err := e.Get(name)
	if err != nil {
		return egress.Settings{}, err
	}
	if sb.Declared {
		return egress.Settings{}, usagef("sandbox %q is declared in the NixOS configuration: change keystone.agent.sandboxes.%s.egress.allow there and rebuild", name, name)
	}
	var out egress.Settings
	err = e.Registry.Update(func(tx *registry.Tx) error {
		ent, ok := tx.Get(name)
		if !ok {
			return fmt.Errorf("%w: %q", registry.ErrNotFound, name)
		}
		s := ent.Egress.WithDefaults()
		if remove {
			s, err = s.Remove(entries...)
		} else {
			s, err = s.Add(entries...)
		}
		if err != nil {
			return &UsageError{Msg: err.Error()}
		}
		ent.Egress, out = s, s
		tx.Put(ent)
		return nil
	})
	return out, err
}

// EgressReport is the sandbox's egress policy and what its proxy refused
// lately (`status`).
type EgressReport struct {
	egress.Settings
	Refused []proxy.Refusal `json:"refused"`
}

func egressReport(sb *Sandbox) EgressReport {
	st, _ := proxy.ReadStatus(sb.Dir.State())
	if st.Refused == nil {
		st.Refused = []proxy.Refusal{}
	}
	return EgressReport{Settings: sb.Egress.WithDefaults(), Refused: st.Refused}
}

package proxy

import (
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/guestconf"
)

// URL is the guest's URL of the proxy.
const URL = "http://" + GuestAddress

// noProxy are destinations clients must not send through the proxy: the
// proxy itself (its provider routes are plain requests to it) and the
// guest's own loopback.
const noProxy = GuestIP + ",localhost,127.0.0.1,::1"

// GuestEnvironment is every variable the proxy needs in the guest's logins,
// `exec` and agent sessions (package guestconf writes them): each provider's
// base URL on the proxy and a placeholder for each credential the host
// holds (present: credential variable names, never values), and, unless the
// egress mode is open, the proxy for HTTP and HTTPS. A provider with none
// gets the placeholder of its first credential, so its agent still talks to
// the proxy and reads the proxy's own answer (which names what to set on the
// host). No value here is secret.
//
// In open mode the guest has qemu's usual network: its other traffic goes
// out directly, as the mode promises (through the proxy it would meet the
// address checks that open does not ask for), while the agents still reach
// their APIs through the provider routes, the one place keys are added.
func GuestEnvironment(mode string, present []string) []guestconf.Var {
	var vars []guestconf.Var
	if mode != egress.Open {
		vars = append(vars,
			guestconf.Var{Name: "HTTP_PROXY", Value: URL}, guestconf.Var{Name: "HTTPS_PROXY", Value: URL},
			guestconf.Var{Name: "http_proxy", Value: URL}, guestconf.Var{Name: "https_proxy", Value: URL},
			guestconf.Var{Name: "NO_PROXY", Value: noProxy}, guestconf.Var{Name: "no_proxy", Value: noProxy},
			// Node's built-in fetch ignores the variables above without it (Node ≥ 22.21/24).
			guestconf.Var{Name: "NODE_USE_ENV_PROXY", Value: "1"})
	}
	has := map[string]bool{}
	for _, v := range present {
		has[v] = true
	}
	for _, p := range credentials.Providers {
		for _, v := range p.BaseURLVars {
			vars = append(vars, guestconf.Var{Name: v, Value: ProviderURL(p)})
		}
		var creds []credentials.Credential
		for _, c := range p.Credentials {
			if has[c.Var] {
				creds = append(creds, c)
			}
		}
		if len(creds) == 0 {
			creds = p.Credentials[:1]
		}
		for _, c := range creds {
			for _, name := range append([]string{c.Var}, c.GuestAliases...) {
				vars = append(vars, guestconf.Var{Name: name, Value: credentials.Placeholder(c.Var)})
			}
		}
	}
	return vars
}

// ProviderURL is the guest's base URL of a provider's route on the proxy.
func ProviderURL(p credentials.Provider) string { return URL + "/" + p.Name + p.GuestSuffix }

// RelayCommand is the program qemu runs for each guest connection to
// GuestAddress (the runner's guestfwd=…-cmd:), quoted for glib's
// g_shell_parse_argv, which splits it (no shell runs).
func RelayCommand(keystone, sandbox, socket string) string {
	return shellQuote(keystone) + " agent proxy-relay --sandbox " + shellQuote(sandbox) + " " + shellQuote(socket)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

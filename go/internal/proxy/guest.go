package proxy

import (
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
)

// Var is one variable of the guest's sessions.
type Var struct{ Name, Value string }

// URL is the guest's URL of the proxy.
const URL = "http://" + GuestAddress

// noProxy are destinations clients must not send through the proxy: the
// proxy itself (its provider routes are plain requests to it) and the
// guest's own loopback.
const noProxy = GuestIP + ",localhost,127.0.0.1,::1"

// GuestEnvironment is every variable the proxy needs in the guest's logins,
// `exec` and agent sessions: the proxy for HTTP and HTTPS, each provider's
// base URL on the proxy, and a placeholder for each credential the host
// holds (present: credential variable names). A provider with none gets the
// placeholder of its first credential, so its agent still talks to the
// proxy and reads the proxy's own answer (which names what to set on the
// host). No value here is secret.
func GuestEnvironment(present []string) []Var {
	vars := []Var{
		{"HTTP_PROXY", URL}, {"HTTPS_PROXY", URL}, {"http_proxy", URL}, {"https_proxy", URL},
		{"NO_PROXY", noProxy}, {"no_proxy", noProxy},
		// Node's built-in fetch ignores the variables above without it (Node ≥ 22.21/24).
		{"NODE_USE_ENV_PROXY", "1"},
	}
	has := map[string]bool{}
	for _, v := range present {
		has[v] = true
	}
	for _, p := range credentials.Providers {
		for _, v := range p.BaseURLVars {
			vars = append(vars, Var{v, URL + "/" + p.Name + p.GuestSuffix})
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
				vars = append(vars, Var{name, credentials.Placeholder(c.Var)})
			}
		}
	}
	return vars
}

// RelayCommand is the program qemu runs for each guest connection to
// GuestAddress (the runner's guestfwd=…-cmd:), quoted for glib's
// g_shell_parse_argv, which splits it (no shell runs).
func RelayCommand(keystone, sandbox, socket string) string {
	return shellQuote(keystone) + " agent proxy-relay --sandbox " + shellQuote(sandbox) + " " + shellQuote(socket)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

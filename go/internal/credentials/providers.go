// Package credentials owns the host's API credentials for the agents and
// where each may go: the providers' table (routes, upstreams, the headers
// that carry a key), the placeholders the guest gets instead of keys, and
// reading keys from the environment of `keystone agent start` and from the
// credentials file.
//
// A credential never leaves the process that holds it except in a request
// the proxy sends to its provider's upstream (package proxy) and over the
// pipe from `start` to the host daemon. It is never formatted into a message,
// a log line, argv or a state file: Set prints only variable names.
package credentials

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Provider is one API the proxy adds keys to. The guest reaches it at
// http://<proxy>/<Name>/…; the proxy sends that to Upstream/… over TLS.
type Provider struct {
	Name string // route and --upstream name: "anthropic"
	// DefaultUpstream is the provider's API base URL (https, no trailing slash).
	DefaultUpstream string
	// GuestSuffix is appended to the route in the guest's base URL, where
	// the agent expects it there ("/v1" for OpenAI's clients).
	GuestSuffix string
	// BaseURLVars receive the proxy route in the guest's environment.
	BaseURLVars []string
	// Credentials this provider accepts, in the order the guest prefers them.
	Credentials []Credential
	// Slots are where the provider's clients put a key.
	Slots []Slot
	// BetaHeader lists the API's opt-in features; a credential may need one.
	BetaHeader string
}

// Credential is one kind of key, named by its host environment variable.
type Credential struct {
	Var string // host variable and guest variable: "ANTHROPIC_API_KEY"
	// GuestAliases receive the same placeholder (agents that read another name).
	GuestAliases []string
	// Slot is where this kind of key goes when the host holds it but the
	// guest sent the placeholder of another kind of the same provider.
	Slot Slot
	// Beta is the feature BetaHeader must list when this kind is used.
	Beta string
}

// Slot is a place in a request that can carry a key.
type Slot struct {
	Header string // canonical header name; "" for a query parameter
	Prefix string // "Bearer " for Authorization
	Query  string // query parameter name
}

// Providers is the table, one entry per provider (docs/egress.md).
var Providers = []Provider{
	{
		// Claude Code: ANTHROPIC_BASE_URL; an API key in x-api-key, the
		// long-lived `claude setup-token` OAuth token as a Bearer token.
		Name: "anthropic", DefaultUpstream: "https://api.anthropic.com",
		BaseURLVars: []string{"ANTHROPIC_BASE_URL"},
		Credentials: []Credential{
			{Var: "ANTHROPIC_API_KEY", Slot: Slot{Header: "X-Api-Key"}},
			{Var: "CLAUDE_CODE_OAUTH_TOKEN", Slot: Slot{Header: "Authorization", Prefix: "Bearer "}, Beta: "oauth-2025-04-20"},
		},
		Slots:      []Slot{{Header: "X-Api-Key"}, {Header: "Authorization", Prefix: "Bearer "}},
		BetaHeader: "Anthropic-Beta",
	},
	{
		// Codex and OpenAI's SDKs: OPENAI_BASE_URL includes /v1; Codex's
		// `exec` reads CODEX_API_KEY, the SDKs OPENAI_API_KEY.
		Name: "openai", DefaultUpstream: "https://api.openai.com", GuestSuffix: "/v1",
		BaseURLVars: []string{"OPENAI_BASE_URL"},
		Credentials: []Credential{
			{Var: "OPENAI_API_KEY", GuestAliases: []string{"CODEX_API_KEY"}, Slot: Slot{Header: "Authorization", Prefix: "Bearer "}},
		},
		Slots: []Slot{{Header: "Authorization", Prefix: "Bearer "}},
	},
	{
		// Gemini CLI: GOOGLE_GEMINI_BASE_URL selects its "gateway" auth,
		// which sends GEMINI_API_KEY in x-goog-api-key (or as a Bearer token
		// with GEMINI_API_KEY_AUTH_MECHANISM=bearer); REST clients use ?key=.
		Name: "gemini", DefaultUpstream: "https://generativelanguage.googleapis.com",
		BaseURLVars: []string{"GOOGLE_GEMINI_BASE_URL"},
		Credentials: []Credential{
			{Var: "GEMINI_API_KEY", Slot: Slot{Header: "X-Goog-Api-Key"}},
		},
		Slots: []Slot{{Header: "X-Goog-Api-Key"}, {Header: "Authorization", Prefix: "Bearer "}, {Query: "key"}},
	},
}

// Lookup returns the provider named name.
func Lookup(name string) (*Provider, bool) {
	for i := range Providers {
		if Providers[i].Name == name {
			return &Providers[i], true
		}
	}
	return nil, false
}

// Names lists the providers' names.
func Names() []string {
	out := make([]string, len(Providers))
	for i, p := range Providers {
		out[i] = p.Name
	}
	return out
}

// Vars lists every credential variable, in table order.
func Vars() []string {
	var out []string
	for _, p := range Providers {
		for _, c := range p.Credentials {
			out = append(out, c.Var)
		}
	}
	return out
}

// Placeholder is what the guest gets instead of the credential named v. It
// is not secret: the proxy replaces it only on requests to v's provider's
// upstream, and only this sandbox's guest can reach its proxy.
func Placeholder(v string) string {
	return "keystone-placeholder-" + strings.ToLower(strings.ReplaceAll(v, "_", "-"))
}

// ValidateUpstream checks an --upstream value: a known provider and an
// https URL with a host, no user info, query or fragment.
func ValidateUpstream(name, raw string) error {
	if _, ok := Lookup(name); !ok {
		return fmt.Errorf("unknown provider %q in --upstream (choose %s)", name, strings.Join(Names(), ", "))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("--upstream %s=%q: want an https URL such as https://gateway.example.com/anthropic (keys are sent over TLS only)", name, raw)
	}
	return nil
}

// ParseUpstream splits an --upstream value "NAME=URL".
func ParseUpstream(s string) (name, raw string, err error) {
	name, raw, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("--upstream %q: want NAME=URL, NAME one of %s", s, strings.Join(Names(), ", "))
	}
	return name, strings.TrimSuffix(raw, "/"), ValidateUpstream(name, strings.TrimSuffix(raw, "/"))
}

// known says whether v is a credential variable of the table.
func known(v string) bool { return slices.Contains(Vars(), v) }

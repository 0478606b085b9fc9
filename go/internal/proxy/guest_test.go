package proxy

import (
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/guestconf"
)

func guestVars(mode string, present ...string) map[string]string {
	out := map[string]string{}
	for _, v := range GuestEnvironment(mode, present) {
		out[v.Name] = v.Value
	}
	return out
}

func TestGuestEnvironmentByMode(t *testing.T) {
	for _, mode := range egress.Modes {
		vars := guestVars(mode)
		// the provider routes work in every mode
		for name, want := range map[string]string{
			"ANTHROPIC_BASE_URL":     "http://10.0.2.100:3128/anthropic",
			"OPENAI_BASE_URL":        "http://10.0.2.100:3128/openai/v1",
			"GOOGLE_GEMINI_BASE_URL": "http://10.0.2.100:3128/gemini",
			"ANTHROPIC_API_KEY":      "keystone-placeholder-anthropic-api-key",
			"CODEX_API_KEY":          "keystone-placeholder-openai-api-key",
		} {
			if vars[name] != want {
				t.Errorf("%s: %s = %q; want %q", mode, name, vars[name], want)
			}
		}
		// open is qemu's usual network: other traffic goes out directly
		_, proxied := vars["HTTPS_PROXY"]
		if proxied != (mode != egress.Open) {
			t.Errorf("%s: HTTPS_PROXY set %v (%q)", mode, proxied, vars["HTTPS_PROXY"])
		}
		if proxied && (vars["HTTPS_PROXY"] != URL || vars["NODE_USE_ENV_PROXY"] != "1") {
			t.Errorf("%s: HTTPS_PROXY %q, NODE_USE_ENV_PROXY %q", mode, vars["HTTPS_PROXY"], vars["NODE_USE_ENV_PROXY"])
		}
		if _, ok := vars["https_proxy"]; ok != proxied {
			t.Errorf("%s: https_proxy and HTTPS_PROXY disagree", mode)
		}
	}
}

// The guest gets a placeholder for the kinds of credential the host holds,
// and the first kind of a provider it holds none of.
func TestGuestEnvironmentPlaceholders(t *testing.T) {
	vars := guestVars(egress.Allowlist, "CLAUDE_CODE_OAUTH_TOKEN")
	if _, ok := vars["ANTHROPIC_API_KEY"]; ok {
		t.Error("an API key placeholder although the host holds only the OAuth token (Claude Code would prefer the key)")
	}
	if vars["CLAUDE_CODE_OAUTH_TOKEN"] != credentials.Placeholder("CLAUDE_CODE_OAUTH_TOKEN") {
		t.Errorf("CLAUDE_CODE_OAUTH_TOKEN = %q", vars["CLAUDE_CODE_OAUTH_TOKEN"])
	}
	both := guestVars(egress.Allowlist, "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
	if both["ANTHROPIC_API_KEY"] == "" || both["CLAUDE_CODE_OAUTH_TOKEN"] == "" {
		t.Errorf("with both held: %v", both)
	}
	// Every credential variable the guest gets holds its placeholder, never
	// anything else, and every value renders into the environment file.
	all := GuestEnvironment(egress.Allowlist, credentials.Vars())
	for _, v := range all {
		if c, ok := credentialOf(v.Name); ok && v.Value != credentials.Placeholder(c) {
			t.Errorf("%s = %q; want the placeholder of %s", v.Name, v.Value, c)
		}
		if strings.Contains(v.Value, "sk-") {
			t.Errorf("%s = %q looks like a key", v.Name, v.Value)
		}
	}
	if _, err := guestconf.EnvironmentFile(guestconf.Config{Name: "x", Extra: all}); err != nil {
		t.Fatal(err)
	}
}

// credentialOf returns the credential a guest variable stands for.
func credentialOf(name string) (string, bool) {
	for _, p := range credentials.Providers {
		for _, c := range p.Credentials {
			if name == c.Var {
				return c.Var, true
			}
			for _, a := range c.GuestAliases {
				if name == a {
					return c.Var, true
				}
			}
		}
	}
	return "", false
}

// Package guestconf renders what the host gives a guest's sessions at every
// start: the environment of logins, `exec` and agent sessions, and the git
// identity. Package sandbox writes the files into the sandbox's read-only
// guest share (state/guest); both guests copy them at boot to the guest
// paths below, which login shells, `exec`, `attach` and the agent session
// all read. That makes this file the one place where a session variable is
// added (Environment).
//
// It renders bytes only: no credential, token, key, credential helper or
// agent socket ever goes into them.
package guestconf

import (
	"fmt"
	"strings"
)

// Where every guest puts the files at boot. modules/agents.nix and the
// test guest's boot script use these paths; a test checks the Nix side.
const (
	GuestDir = "/run/keystone-agent"
	// EnvironmentPath is a POSIX sh file of `export NAME='value'` lines.
	EnvironmentPath = GuestDir + "/environment"
	// GitConfigPath is included by the guest's system git config.
	GitConfigPath = GuestDir + "/gitconfig"
)

// Config is what the files are rendered from.
type Config struct {
	Name     string // sandbox name
	Identity Identity
	// Extra are variables another package computes for this start (the
	// egress proxy's, proxy.GuestEnvironment), after Environment's own.
	Extra []Var
}

// Var is one session variable.
type Var struct{ Name, Value string }

// Environment lists the variables every session in the sandbox gets; add a
// variable here, one line, and every guest has it after the next start.
func Environment(c Config) []Var {
	return []Var{
		{"KEYSTONE_SANDBOX", c.Name},
		{"IS_SANDBOX", "1"},          // Claude Code: the no-prompt flag is allowed even as root
		{"DISABLE_AUTOUPDATER", "1"}, // Claude Code: the pinned install is read-only
		{"LANG", "C.UTF-8"},          // tmux and the agents' TUIs draw UTF-8
	}
}

// EnvironmentFile renders Environment as the file the guest sources.
func EnvironmentFile(c Config) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Written by keystone agent at every start; sourced by login shells, exec,\n# attach and the agent session (docs/agents.md). Changes are lost.\n")
	for _, v := range append(Environment(c), c.Extra...) {
		if !isShellName(v.Name) {
			return nil, fmt.Errorf("session variable name %q is not a shell name", v.Name)
		}
		if strings.ContainsAny(v.Value, "\x00\n") {
			return nil, fmt.Errorf("session variable %s: value has a NUL or newline", v.Name)
		}
		fmt.Fprintf(&b, "export %s='%s'\n", v.Name, strings.ReplaceAll(v.Value, "'", `'\''`))
	}
	return []byte(b.String()), nil
}

func isShellName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == ""
}

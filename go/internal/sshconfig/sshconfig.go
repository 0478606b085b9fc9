// Package sshconfig lets the host's own ssh (and what runs on it: scp, rsync,
// VS Code Remote-SSH, JetBrains Gateway, Zed) reach a sandbox with the same
// pin the helper uses: an ssh_config(5) `Host keystone-<name>` block naming
// the sandbox's client key and a known_hosts file that holds the sandbox's
// pinned host key and nothing else, with StrictHostKeyChecking yes.
//
// It renders text and edits one line of the user's ~/.ssh/config; it never
// rewrites anything else there and never weakens host key checking.
package sshconfig

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keystone-agent/keystone/internal/atomicfile"
)

// AliasPrefix starts every host alias: `ssh keystone-my-app`.
const AliasPrefix = "keystone-"

// Alias is the ssh host name of the sandbox called name.
func Alias(name string) string { return AliasPrefix + name }

// Host is what a block needs to know about one sandbox.
type Host struct {
	Name       string // sandbox name
	Port       int    // SSH port on 127.0.0.1
	User       string // guest account
	Identity   string // the sandbox's client private key
	HostKey    string // the pinned host key, an authorized_keys-style line
	KnownHosts string // the file that holds HostKey alone (in the sandbox's state/)
}

// Render writes h's known_hosts file (atomically: ssh may be reading it) and
// returns its block.
func Render(h Host) (string, error) {
	block, err := Block(h)
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(h.KnownHosts, []byte(KnownHostsLine(h.Name, h.HostKey)), 0o644); err != nil {
		return "", fmt.Errorf("failed to write the known hosts of %q: %w", h.Name, err)
	}
	return block, nil
}

// Block renders the `Host keystone-<name>` block. The host key is looked up
// under the alias (HostKeyAlias), so the pin holds whatever port the sandbox
// gets; the global known_hosts is not consulted, so only the pinned key is
// ever accepted. The host's agent and X11 are never forwarded into the
// sandbox, whatever a later `Host *` says (ssh takes the first value it reads).
func Block(h Host) (string, error) {
	identity, err := quote(h.Identity)
	if err != nil {
		return "", err
	}
	known, err := quote(h.KnownHosts)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	line := func(k string, v any) { fmt.Fprintf(&b, "  %s %v\n", k, v) }
	fmt.Fprintf(&b, "Host %s\n", Alias(h.Name))
	line("HostName", "127.0.0.1")
	line("Port", h.Port)
	line("User", h.User)
	line("IdentityFile", identity)
	line("IdentitiesOnly", "yes")
	line("HostKeyAlias", Alias(h.Name))
	line("UserKnownHostsFile", known)
	line("GlobalKnownHostsFile", "/dev/null")
	line("StrictHostKeyChecking", "yes")
	line("UpdateHostKeys", "no")
	line("CheckHostIP", "no")
	line("ForwardAgent", "no")
	line("ForwardX11", "no")
	return b.String(), nil
}

// KnownHostsLine is the whole content of a sandbox's known_hosts file: its
// pinned host key (an authorized_keys-style "type base64 [comment]" line),
// under the alias.
func KnownHostsLine(name, hostKey string) string {
	f := strings.Fields(hostKey)
	if len(f) > 2 {
		f = f[:2] // the comment is not part of the key
	}
	return Alias(name) + " " + strings.Join(f, " ") + "\n"
}

// errUnquotable refuses a path ssh_config cannot carry.
var errUnquotable = errors.New("cannot be written in an ssh config (it contains a double quote or a line break)")

// quote writes path as one ssh_config argument: in double quotes (spaces),
// with % doubled, since ssh expands %-tokens in IdentityFile and
// UserKnownHostsFile.
func quote(path string) (string, error) {
	if strings.ContainsAny(path, "\"\n\r") {
		return "", fmt.Errorf("path %q %w", path, errUnquotable)
	}
	return `"` + strings.ReplaceAll(path, "%", "%%") + `"`, nil
}

// Package names owns the sandbox name rules and the derivation of a default
// name from a project path.
//
// A name is used as a path component under the state directory, a guest
// hostname, a systemd instance and a JSON key, so it is held to the tightest
// of those: a DNS label in lower case (RFC 1123), at most 63 characters.
// Host interface ids (tap, macvtap) allow fewer; the NixOS module asserts that.
package names

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// MaxLen is the longest name: a hostname label.
const MaxLen = 63

var valid = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Validate returns an error that says what is wrong with name and how to fix it.
func Validate(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("sandbox name is empty")
	case len(name) > MaxLen:
		return fmt.Errorf("sandbox name %q is %d characters long; the limit is %d", short(name), len(name), MaxLen)
	case !valid.MatchString(name):
		return fmt.Errorf("invalid sandbox name %q: use lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// FromPath derives a sandbox name from a project directory: its base name,
// lower-cased, with every run of other characters turned into one '-'.
func FromPath(project string) (string, error) {
	base := filepath.Base(filepath.Clean(project))
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(base) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > MaxLen {
		name = strings.TrimRight(name[:MaxLen], "-")
	}
	if err := Validate(name); err != nil {
		return "", fmt.Errorf("cannot derive a sandbox name from %q", project)
	}
	return name, nil
}

func short(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

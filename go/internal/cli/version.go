package cli

import (
	"fmt"
	"runtime/debug"
)

// Version is stamped by the Nix package (lib/package.nix) with the package's
// version: -ldflags -X github.com/keystone-agent/keystone/internal/cli.Version=…
// It is the release version, not a commit, so the stamp itself never changes
// the build. Unstamped builds describe themselves from Go's build info.
var Version = ""

// versionLine is what `keystone --version` prints.
func versionLine() string {
	if Version != "" {
		return "keystone " + Version
	}
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && len(s.Value) >= 12:
				rev = s.Value[:12]
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = ", modified"
			}
		}
		if rev != "" {
			v += fmt.Sprintf(" (git %s%s)", rev, dirty)
		}
	}
	return "keystone " + v
}

package cli

import (
	"context"
	"fmt"

	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/statedir"
)

func newPrepareGuestCmd() *verb {
	return &verb{
		name:    "prepare-guest",
		hidden:  true,
		summary: "write a declared sandbox's session environment and git identity",
		usage: `Usage: keystone agent prepare-guest <name> --project PATH --dir DIR

Run by the prepare unit of a declared sandbox (keystone-agent-prepare-<name>),
as its owner, before the VM boots: writes DIR/state/guest/environment and
DIR/state/guest/gitconfig as ` + "`start`" + ` does for its sandboxes (docs/agents.md).
`,
		run: runPrepareGuest,
	}
}

func runPrepareGuest(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	project := fs.String("project", "", "the sandbox's project (a git repository)")
	dir := fs.String("dir", "", "the sandbox's directory")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 || *project == "" || *dir == "" {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("prepare-guest: a name, --project and --dir are required")}
	}
	if err := names.Validate(fs.Arg(0)); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	sb := &sandbox.Sandbox{
		Entry: registry.Entry{Name: fs.Arg(0), ProjectPath: *project},
		Dir:   statedir.Sandbox(*dir), Declared: true,
	}
	// The host daemon reads the credentials file later, under systemd's
	// LoadCredential; the guest gets each provider's first placeholder.
	return sandbox.WriteGuestConf(ctx, sb, nil, env.Stderr)
}

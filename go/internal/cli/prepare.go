package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
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
		usage: `Usage: keystone agent prepare-guest <name> --project PATH --dir DIR [--egress MODE] [--credentials FILE]

Run by the prepare unit of a declared sandbox (keystone-agent-prepare-<name>),
as its owner, before the VM boots: writes DIR/state/guest/environment and
DIR/state/guest/gitconfig as ` + "`start`" + ` does for its sandboxes (docs/agents.md).
The environment has the proxy's variables for the egress MODE and a
placeholder for each credential FILE names (the host daemon's credentials
file; only its names are read into the guest's files, docs/egress.md).
`,
		run: runPrepareGuest,
	}
}

func runPrepareGuest(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	project := fs.String("project", "", "the sandbox's project (a git repository)")
	dir := fs.String("dir", "", "the sandbox's directory")
	mode := fs.String("egress", egress.DefaultMode, "the sandbox's egress mode: "+strings.Join(egress.Modes, ", "))
	credsFile := fs.String("credentials", "", "the credentials file of the sandbox's proxy (only its names are used)")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 || *project == "" || *dir == "" {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("prepare-guest: a name, --project and --dir are required")}
	}
	if err := names.Validate(fs.Arg(0)); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if err := egress.ValidateMode(*mode); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	var present []string
	if *credsFile != "" {
		creds, _, err := credentials.ReadFile(*credsFile)
		if err != nil {
			return err
		}
		present = creds.Names()
	}
	sb := &sandbox.Sandbox{
		Entry: registry.Entry{Name: fs.Arg(0), ProjectPath: *project, Egress: egress.Settings{Mode: *mode}},
		Dir:   statedir.Sandbox(*dir), Declared: true,
	}
	return sandbox.WriteGuestConf(ctx, sb, present, env.Stderr)
}

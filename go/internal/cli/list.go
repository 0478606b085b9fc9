package cli

import (
	"context"
	"fmt"

	"github.com/keystone-agent/keystone/internal/sandbox"
)

func newListCmd() *verb {
	return &verb{
		name:    "list",
		summary: "list all sandboxes",
		usage: `Usage: keystone agent list [--json]

List every sandbox, imperative and declared, with its derived state.
--json prints an array of the objects ` + "`status --json`" + ` prints ([] when empty).
`,
		run: runList,
	}
}

func runList(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parseArgs(fs, v, args, 0); err != nil {
		return err
	}
	sbe, err := env.Sandboxes()
	if err != nil {
		return err
	}
	all, err := sbe.List()
	if err != nil {
		return err
	}
	sts := sbe.InspectAll(all)
	if *asJSON {
		if sts == nil {
			sts = []sandbox.Status{}
		}
		return printJSON(env.Stdout, sts)
	}
	if len(sts) == 0 {
		fmt.Fprintln(env.Stderr, "No sandboxes. Run `keystone agent start` in a git repository to create one.")
		return nil
	}
	return printTable(env.Stdout, sts)
}

package cli

import (
	"context"
)

func init() {
	register(&verb{
		name:    "status",
		summary: "show the state of a sandbox",
		usage: `Usage: keystone agent status [name] [--json]

Show a sandbox's state (running, stopped, or error with the reason),
derived from evidence: the VM process and SSH answering. The name defaults
to the current project's sandbox.
`,
		run: runStatus,
	})
}

func runStatus(ctx context.Context, env *Env, args []string) error {
	v := verbs["status"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if err := maxArgs(v, fs.Args(), 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	st := sbe.Inspect(sb)
	if *asJSON {
		return printJSON(env.Stdout, st)
	}
	return printStatus(env.Stdout, st)
}

package cli

import (
	"context"
	"fmt"
)

func newStopCmd() *verb {
	return &verb{
		name:    "stop",
		summary: "stop a running sandbox",
		usage: `Usage: keystone agent stop [name] [--sync]

Shut the sandbox down gracefully (then terminate, then kill, so no process
is left behind). The workspace and the guest's state are kept.
`,
		run: runStop,
	}
}

func runStop(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	withSync := fs.Bool("sync", false, "sync changes before stopping")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	if *withSync {
		if err := syncBeforeStop(ctx, env, sbe, sb); err != nil {
			return err
		}
	}
	how, err := sbe.Stop(sb)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "Sandbox %q %s.\n", sb.Name, how)
	return nil
}

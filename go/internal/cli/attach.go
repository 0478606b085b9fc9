package cli

import (
	"context"
	"os"

	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
)

func newAttachCmd(name string) *verb {
	return &verb{
		name:    name,
		summary: "open a shell in a running sandbox at /workspace",
		usage: `Usage: keystone agent ` + name + ` [name]

Open an interactive shell in the sandbox at /workspace. Detach with Ctrl-D
or 'exit'. The exit status is the remote shell's. attach and ssh are the same.
`,
		run: runAttach,
	}
}

func runAttach(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	_, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	return attach(ctx, env, sb)
}

func attach(ctx context.Context, env *Env, sb *sandbox.Sandbox) error {
	client, err := sb.Connect(ctx)
	if err != nil {
		return notReachable(sb, err)
	}
	defer client.Close()
	code, err := sshconn.Attach(ctx, client, sshconn.Session{
		Dir:    "/workspace",
		Term:   os.Getenv("TERM"),
		Stdin:  env.Stdin,
		Stdout: env.Stdout,
		Stderr: env.Stderr,
	})
	if err != nil {
		return err
	}
	return exitStatus(code)
}

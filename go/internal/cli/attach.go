package cli

import (
	"context"
	"os"

	"github.com/keystone-agent/keystone/internal/guestconf"
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
A sandbox started with --agent is joined in its agent's tmux session
instead (started again if the agent has exited); detach with Ctrl-b d, and
the agent keeps running. --shell opens a login shell all the same.
`,
		run: runAttach,
	}
}

func runAttach(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	shell := fs.Bool("shell", false, "open a login shell, not the agent's session")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	_, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	return attach(ctx, env, sb, *shell)
}

// attach joins the agent's session, or opens a login shell when the sandbox
// has no agent or shell is set.
func attach(ctx context.Context, env *Env, sb *sandbox.Sandbox, shell bool) error {
	client, err := sb.Connect(ctx)
	if err != nil {
		return notReachable(sb, err)
	}
	defer client.Close()
	var argv []string
	if !shell {
		if argv, err = sb.AttachArgv(ctx); err != nil {
			return err
		}
	}
	code, err := sshconn.Attach(ctx, client, sshconn.Session{
		Dir:    sandbox.WorkDir,
		Source: guestconf.EnvironmentPath,
		Argv:   argv,
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

package cli

import (
	"context"
	"fmt"

	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
)

func newExecCmd() *verb {
	return &verb{
		name:    "exec",
		summary: "run a command in a sandbox",
		usage: `Usage: keystone agent exec [name] -- <command> [args...]

Run a command in the sandbox at /workspace. Arguments reach the command
exactly as given. The name defaults to the current project's sandbox.
The exit status is the command's; 255 when the SSH connection failed.
`,
		run: runExec,
	}
}

func runExec(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	if err := parse(fs, v, args); err != nil {
		return err
	}
	dash := fs.ArgsLenAtDash()
	if dash < 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("exec: missing `--` before the command"), Hint: "usage: keystone agent exec [name] -- <command>"}
	}
	named, argv := fs.Args()[:dash], fs.Args()[dash:]
	if err := maxArgs(v, named, 1); err != nil {
		return err
	}
	if len(argv) == 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("exec: no command after `--`")}
	}
	_, sb, err := resolve(env, named)
	if err != nil {
		return err
	}
	client, err := sb.Connect(ctx)
	if err != nil {
		return notReachable(sb, err)
	}
	defer client.Close()
	code, err := sshconn.Exec(ctx, client, sshconn.Command{
		Argv: argv, Dir: "/workspace",
		Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr,
	})
	if err != nil {
		return &ExitError{Code: code, Err: err}
	}
	return exitStatus(code)
}

// notReachable explains a failed connection with the sandbox's derived state.
func notReachable(sb *sandbox.Sandbox, err error) error {
	hint := fmt.Sprintf("`keystone agent status %s` tells why; `keystone agent start` boots it", sb.Name)
	return &ExitError{Code: ExitTransport, Err: fmt.Errorf("cannot reach sandbox %q: %w", sb.Name, err), Hint: hint}
}

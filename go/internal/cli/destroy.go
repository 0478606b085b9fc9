package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"golang.org/x/term"

	"github.com/keystone-agent/keystone/internal/sandbox"
)

func newDestroyCmd() *verb {
	return &verb{
		name:    "destroy",
		summary: "remove a sandbox completely",
		usage: `Usage: keystone agent destroy <name> [--force]

Remove the sandbox's workspace and state. Commits that were not synced are
lost. The host project is never touched. Asks for confirmation on a
terminal and refuses a running sandbox; --force skips the question and
stops a running sandbox first (required without a terminal).
`,
		run: runDestroy,
	}
}

func runDestroy(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	force := fs.Bool("force", false, "skip confirmation, force destroy if running")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("destroy: which sandbox? give its name"), Hint: "usage: keystone agent destroy <name> [--force]"}
	}
	if err := maxArgs(v, fs.Args(), 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	if !*force {
		// The guide's --force: "force destroy if running"; without it a
		// running sandbox is refused, so a stray destroy cannot cut an agent off.
		// The VM process decides, not SSH: a VM too busy to answer still runs.
		if sandbox.VMAlive(sb) {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("sandbox %q is running", sb.Name),
				Hint: fmt.Sprintf("stop it first (`keystone agent stop %s`), or use --force", sb.Name)}
		}
		if env.Stdin == nil || !term.IsTerminal(int(env.Stdin.Fd())) {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("destroy: refusing to remove %q without confirmation", sb.Name), Hint: "not a terminal: use --force"}
		}
		fmt.Fprintf(env.Stderr, "Destroy sandbox %q and its workspace %s? Unsynced commits are lost. [y/N] ", sb.Name, sb.Dir.Workspace())
		answer, _ := bufio.NewReader(env.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(env.Stderr, "Nothing was removed.")
			return &ExitError{Code: ExitFailure, Quiet: true}
		}
	}
	if err := sbe.Destroy(sb); err != nil {
		return err
	}
	refreshSSHConfig(env, sbe)
	fmt.Fprintf(env.Stderr, "Sandbox %q destroyed.\n", sb.Name)
	return nil
}

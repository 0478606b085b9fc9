package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keystone-agent/keystone/internal/artifacts"
	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/sandbox"
)

func newSyncCmd() *verb {
	return &verb{
		name:    "sync",
		summary: "sync committed changes from the sandbox to the host",
		usage: `Usage: keystone agent sync [name] [--dry-run] [--artifacts] [--json]

Fetch the sandbox's committed branches into refs/remotes/keystone/<name>/
and fast-forward your current branch when it has not moved on. Uncommitted
files in the sandbox are listed, not transferred. When your branch has
diverged or the fast-forward would overwrite uncommitted changes, nothing
changes and the git commands to merge by hand are printed.

Exit codes: 0 synced, 1 sandbox not found or not running, 2 no changes to
sync, 3 merge conflict (manual resolution needed), 64 bad option.
`,
		run: runSync,
	}
}

func runSync(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	var o sandbox.SyncOptions
	fs.BoolVar(&o.DryRun, "dry-run", false, "preview what would be synced; change nothing")
	fs.BoolVar(&o.Artifacts, "artifacts", false, "also copy build directories: dist/ build/ target/ .next/ out/")
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	return syncSandbox(ctx, env, sbe, sb, o, *asJSON)
}

// syncSandbox syncs, prints the result and maps the outcome to the guide's
// exit codes.
func syncSandbox(ctx context.Context, env *Env, sbe *sandbox.Env, sb *sandbox.Sandbox, o sandbox.SyncOptions, asJSON bool) error {
	res, err := sbe.Sync(ctx, sb, o)
	if res != nil {
		if asJSON {
			if perr := printJSON(env.Stdout, res); perr != nil {
				return perr
			}
		} else {
			gitsync.Render(env.Stdout, res.Report)
			renderArtifacts(env.Stdout, res.Artifacts, o.Artifacts && o.DryRun)
		}
		gitsync.RenderWarnings(env.Stderr, res.Report)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gitsync.ErrNoChanges):
		return &ExitError{Code: ExitNoChanges, Quiet: true}
	case errors.Is(err, gitsync.ErrManualMerge):
		return &ExitError{Code: ExitConflict, Err: err}
	case errors.Is(err, sandbox.ErrNotRunning):
		return &ExitError{Code: ExitNotFound, Err: err}
	}
	return err
}

func renderArtifacts(w io.Writer, r *artifacts.Report, dry bool) {
	if dry {
		fmt.Fprintln(w, "Build artifacts are not copied in a dry run.")
	}
	if r == nil {
		return
	}
	fmt.Fprintf(w, "Copied %d build artifact files (%d bytes) into the project.\n", len(r.Copied), r.Bytes)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  skipped %s: %s\n", s.Path, s.Reason)
	}
}

// syncBeforeStop is `stop --sync`: a diverged or dirty host does not keep the
// sandbox running, because the sandbox's commits are already safe in the
// remote-tracking refs; any other failure stops the stop.
func syncBeforeStop(ctx context.Context, env *Env, sbe *sandbox.Env, sb *sandbox.Sandbox) error {
	err := syncSandbox(ctx, env, sbe, sb, sandbox.SyncOptions{AnyState: true}, false)
	var ee *ExitError
	if err == nil || (errors.As(err, &ee) && ee.Code == ExitNoChanges) {
		return nil
	}
	if errors.Is(err, gitsync.ErrManualMerge) {
		fmt.Fprintf(env.Stderr, "keystone: %v\nkeystone: the sandbox's commits are kept in the host repository; stopping anyway\n", err)
		return nil
	}
	return err
}

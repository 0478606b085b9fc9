package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keystone-agent/keystone/internal/artifacts"
	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/syncwatch"
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
	dry := fs.Bool("dry-run", false, "preview what would be synced; change nothing")
	withArtifacts := fs.Bool("artifacts", false, "also copy build directories: dist/ build/ target/ .next/ out/")
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	_, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	// Sync reads the workspace on the host and needs no SSH: the VM process is
	// the evidence (an SSH probe, slow under load, would refuse for nothing).
	if !sandbox.VMAlive(sb) {
		return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("sandbox %q is not running", sb.Name),
			Hint: fmt.Sprintf("`keystone agent status %s` says why; `keystone agent stop --sync` syncs before stopping", sb.Name)}
	}
	return syncSandbox(ctx, env, sb, syncFlags{dryRun: *dry, artifacts: *withArtifacts, json: *asJSON})
}

type syncFlags struct{ dryRun, artifacts, json bool }

// syncOutput is what `sync --json` prints: the git report, plus the artifacts.
type syncOutput struct {
	*gitsync.Report
	Artifacts *artifacts.Report `json:"artifacts,omitempty"`
}

// syncSandbox syncs under the sandbox's lock, prints the report and maps the
// outcome to the guide's exit codes.
func syncSandbox(ctx context.Context, env *Env, sb *sandbox.Sandbox, f syncFlags) error {
	o := gitsyncOptions(sb)
	o.DryRun = f.dryRun
	rep, err := syncwatch.RunOnce(ctx, sb.Dir.State(), "", o)
	if rep == nil {
		return err
	}
	out := syncOutput{Report: rep}
	if f.artifacts && !f.dryRun {
		ar, aerr := artifacts.Copy(ctx, sb.Dir.Workspace(), sb.ProjectPath)
		out.Artifacts = ar
		if aerr != nil {
			err = errors.Join(err, fmt.Errorf("cannot copy build artifacts: %w", aerr))
		}
	}
	if f.json {
		if perr := printJSON(env.Stdout, out); perr != nil {
			return perr
		}
	} else {
		gitsync.Render(env.Stdout, rep)
		renderArtifacts(env.Stdout, out.Artifacts, f.artifacts && f.dryRun)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gitsync.ErrNoChanges):
		return &ExitError{Code: ExitNoChanges, Quiet: true}
	case errors.Is(err, gitsync.ErrManualMerge):
		return &ExitError{Code: ExitConflict, Err: err}
	}
	return err
}

func gitsyncOptions(sb *sandbox.Sandbox) gitsync.Options {
	return gitsync.Options{Name: sb.Name, HostRepo: sb.ProjectPath, Workspace: sb.Dir.Workspace()}
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
func syncBeforeStop(ctx context.Context, env *Env, sb *sandbox.Sandbox) error {
	err := syncSandbox(ctx, env, sb, syncFlags{})
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

package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/keystone-agent/keystone/internal/artifacts"
	"github.com/keystone-agent/keystone/internal/forward"
	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// ErrNotRunning refuses a sync of a sandbox whose VM does not run.
var ErrNotRunning = errors.New("not running")

// SyncOptions are what `sync` and `stop --sync` ask for.
type SyncOptions struct {
	DryRun    bool // change nothing, not even refs
	Artifacts bool // also copy the build directories into the project
	// AnyState syncs whether or not the VM runs (`stop --sync`): the
	// workspace is on the host either way.
	AnyState bool
}

// SyncResult is what `sync --json` prints: the git report, plus the artifacts.
type SyncResult struct {
	*gitsync.Report
	Artifacts *artifacts.Report `json:"artifacts,omitempty"`
}

// Sync brings the sandbox's committed work into the host repository (one
// sync at a time, recorded in state/sync.json) and, when asked, its build
// artifacts. The result is nil only when nothing could be tried.
func (e *Env) Sync(ctx context.Context, sb *Sandbox, o SyncOptions) (*SyncResult, error) {
	// The VM process is the evidence, not SSH: sync reads the workspace on the
	// host, and an SSH probe, slow under load, would refuse for nothing.
	if !o.AnyState && !VMAlive(sb) {
		return nil, withHint(fmt.Errorf("sandbox %q is %w", sb.Name, ErrNotRunning),
			"`keystone agent status %s` says why; `keystone agent stop --sync` syncs before stopping", sb.Name)
	}
	g := sb.GitSync()
	g.DryRun = o.DryRun
	rep, err := syncwatch.RunOnce(ctx, sb.Dir.State(), g)
	if rep == nil {
		return nil, err
	}
	res := &SyncResult{Report: rep}
	if o.Artifacts && !o.DryRun {
		ar, aerr := artifacts.Copy(ctx, sb.Dir.Workspace(), sb.ProjectPath)
		res.Artifacts = ar
		if aerr != nil {
			err = errors.Join(err, fmt.Errorf("cannot copy build artifacts: %w", aerr))
		}
	}
	return res, err
}

// Forwards asks the sandbox's host daemon for its background port forwards;
// none when it does not answer.
func (sb *Sandbox) Forwards(ctx context.Context) []forward.Spec {
	specs, err := forward.Ask(ctx, sb.Dir.Path(statedir.ForwardSocket), forward.Request{Op: forward.OpList})
	if err != nil {
		return nil
	}
	return specs
}

// GitSync is how gitsync reaches the sandbox: its name, the host project and
// the workspace.
func (sb *Sandbox) GitSync() gitsync.Options {
	return gitsync.Options{Name: sb.Name, HostRepo: sb.ProjectPath, Workspace: sb.Dir.Workspace()}
}

// Report is `status`: the derived state, plus the last sync with the commits
// pending now (a dry-run sync, which is why `list` does without it), and the
// background port forwards its host daemon keeps.
type Report struct {
	Status
	Sync     *syncwatch.Status `json:"sync,omitempty"`
	Egress   EgressReport      `json:"egress"`
	Forwards []forward.Spec    `json:"forwards,omitempty"`
}

// Report inspects sb and reads its sync and egress state and forwards.
func (e *Env) Report(ctx context.Context, sb *Sandbox) Report {
	r := Report{Status: e.Inspect(sb), Egress: egressReport(sb)}
	if r.State == Running {
		r.Forwards = sb.Forwards(ctx)
	}
	st, err := syncwatch.ReadStatus(sb.Dir.State())
	if err != nil {
		return r
	}
	st.PendingCommits, err = syncwatch.Pending(ctx, sb.GitSync())
	if err != nil {
		st.PendingCommits, st.PendingError = 0, err.Error()
	}
	r.Sync = &st
	return r
}

package syncwatch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// RunOnce runs one sync under the sandbox's sync lock and records its outcome in
// state/sync.json (a dry run records nothing). It returns what gitsync.Sync returns.
func RunOnce(ctx context.Context, stateDir string, o gitsync.Options) (*gitsync.Report, error) {
	return runOnce(ctx, stateDir, "", o)
}

// runOnce is RunOnce for the watcher of mode, which it records in sync.json;
// a manual sync (mode "") keeps the mode recorded there.
func runOnce(ctx context.Context, stateDir, mode string, o gitsync.Options) (*gitsync.Report, error) {
	lock := flock.New(filepath.Join(stateDir, statedir.SyncLock))
	ok, err := lock.TryLockContext(ctx, 100*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("cannot take the sync lock of %q: %w", o.Name, err)
	}
	defer lock.Unlock()
	rep, err := gitsync.Sync(ctx, o)
	if o.DryRun {
		return rep, err
	}
	prev, _ := ReadStatus(stateDir)
	st := record(prev, rep, err)
	if mode != "" {
		st.Mode = mode
	}
	// The sync happened whether or not its record can be written: a failure
	// here is a warning on the report, not the sync's result.
	if werr := writeStatus(stateDir, st); werr != nil {
		msg := fmt.Sprintf("the sync's outcome could not be recorded (%v): `keystone agent status` shows the previous sync", werr)
		if rep != nil {
			rep.Warnings = append(rep.Warnings, msg)
		} else {
			err = fmt.Errorf("%w; %s", err, msg)
		}
	}
	return rep, err
}

// record turns a sync's outcome into the status to store.
func record(prev Status, rep *gitsync.Report, err error) Status {
	st := Status{Mode: prev.Mode, LastSync: time.Now().UTC()}
	if rep == nil {
		// A failure before anything moved: the previous picture still holds.
		st = prev
		st.LastSync, st.LastResult, st.LastError = time.Now().UTC(), "error", err.Error()
		return st
	}
	st.LastResult, st.Branch, st.Head, st.Ref = rep.Result, rep.Branch, rep.To, rep.Ref
	for _, p := range rep.Review {
		st.Review = append(st.Review, p.Path)
	}
	var m *gitsync.ManualMergeError
	if errors.As(err, &m) {
		st.PendingCommits = len(rep.Commits)
		st.Paused, st.PausedReason, st.Commands = true, m.Error(), m.Commands
	}
	return st
}

// Pending counts the commits on the sandbox's branch that the host's branch
// lacks, without changing anything: `status` shows it live.
func Pending(ctx context.Context, o gitsync.Options) (int, error) {
	return gitsync.Pending(ctx, o)
}

package gitsync

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// Two sandboxes of one project sync at the same moment, again and again
// (their syncs do not share a lock; the host repository is the same): each
// sync succeeds or fails with a reason, the host stays consistent, and in the
// end every commit of both has arrived.
func TestConcurrentSyncsIntoOneRepository(t *testing.T) {
	host := newHost(t)
	var ws [2]string
	for i := range ws {
		ws[i] = filepath.Join(t.TempDir(), "workspace")
		if err := Clone(context.Background(), host, ws[i]); err != nil {
			t.Fatal(err)
		}
		gitIn(t, ws[i], "switch", "-q", "-c", fmt.Sprintf("agent-%d", i))
	}
	var tips [2]string
	for round := 0; round < 10; round++ {
		for i := range ws {
			tips[i] = commit(t, ws[i], fmt.Sprint("round ", round), map[string]string{
				fmt.Sprintf("f%d.txt", i): fmt.Sprintf("%d %d\n", round, i)})
		}
		var wg sync.WaitGroup
		for i := range ws {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				o := Options{Name: fmt.Sprintf("sb%d", i), HostRepo: host, Workspace: ws[i]}
				if _, err := Sync(context.Background(), o); err != nil && !errors.Is(err, ErrNoChanges) {
					if errors.Is(err, ErrHostile) {
						t.Errorf("round %d, sandbox %d: a concurrent sync blamed the workspace: %v", round, i, err)
					}
					t.Logf("round %d, sandbox %d: %v", round, i, err)
				}
			}(i)
		}
		wg.Wait()
		gitIn(t, host, "fsck", "--no-dangling", "--no-progress")
	}
	for i := range ws {
		mustSyncOrNoChanges(t, Options{Name: fmt.Sprintf("sb%d", i), HostRepo: host, Workspace: ws[i]})
		if got := gitIn(t, host, "rev-parse", fmt.Sprintf("refs/remotes/keystone/sb%d/agent-%d", i, i)); got != tips[i] {
			t.Errorf("sandbox %d: tracking ref at %s, want %s", i, got, tips[i])
		}
	}
	noTemporaries(t, host)
}

func mustSyncOrNoChanges(t *testing.T, o Options) {
	t.Helper()
	if _, err := Sync(context.Background(), o); err != nil && !errors.Is(err, ErrNoChanges) {
		t.Fatalf("sync: %v", err)
	}
}

// Two sandboxes of one project both commit on the host's current branch and
// sync at the same moment: one fast-forwards, the other is told to merge by
// hand (or finds nothing to do); neither leaves the host's working tree
// changed or blames its workspace.
func TestConcurrentFastForwardsOfOneBranch(t *testing.T) {
	for round := 0; round < 10; round++ {
		host := newHost(t)
		var ws [2]string
		var tips [2]string
		for i := range ws {
			ws[i] = filepath.Join(t.TempDir(), "workspace")
			if err := Clone(context.Background(), host, ws[i]); err != nil {
				t.Fatal(err)
			}
			files := map[string]string{"README.md": fmt.Sprintf("sandbox %d\n", i)}
			for f := 0; f < 50; f++ {
				files[fmt.Sprintf("d/f%02d.txt", f)] = fmt.Sprintf("%d %d\n", i, f)
			}
			tips[i] = commit(t, ws[i], "work", files)
		}
		var wg sync.WaitGroup
		for i := range ws {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, err := Sync(context.Background(), Options{Name: fmt.Sprintf("sb%d", i), HostRepo: host, Workspace: ws[i]})
				if errors.Is(err, ErrHostile) {
					t.Errorf("round %d, sandbox %d: a concurrent sync blamed the workspace: %v", round, i, err)
				}
			}(i)
		}
		wg.Wait()
		gitIn(t, host, "fsck", "--no-dangling", "--no-progress")
		if main := gitIn(t, host, "rev-parse", "main"); main != tips[0] && main != tips[1] {
			t.Errorf("round %d: main at %s, neither sandbox's tip", round, main)
		}
		if st := gitIn(t, host, "status", "--porcelain", "--untracked-files=all"); st != "" {
			t.Fatalf("round %d: the host's working tree is left changed:\n%s", round, st)
		}
	}
}

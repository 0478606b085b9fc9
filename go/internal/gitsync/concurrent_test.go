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

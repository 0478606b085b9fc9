package gitsync

import (
	"errors"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// A panic on one of the sync's worker goroutines, where Sync's own recover
// cannot reach, is an error, not the end of the process (the watcher's, or
// status's): none is expected, since every parser is fuzzed.
func TestWorkerPanicsAreErrors(t *testing.T) {
	if _, _, _, err := (&transfer{}).safeRead(want{hash: plumbing.NewHash("1234"), typ: plumbing.TreeObject}); !errors.Is(err, ErrHostile) {
		t.Errorf("safeRead on a transfer with no workspace = %v; want ErrHostile", err)
	}
}

package gitsync

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// A panic on one of the sync's worker goroutines, where Sync's own recover
// cannot reach, is an error, not the end of the process (the watcher's, or
// status's): none is expected, since every parser is fuzzed.
func TestWorkerPanicsAreErrors(t *testing.T) {
	panics := func(plumbing.Hash) (int64, io.ReadCloser, error) { panic("a parser's bug") }
	ch := &object.Change{To: object.ChangeEntry{Name: "a", TreeEntry: object.TreeEntry{Name: "a", Hash: plumbing.NewHash("1234")}}}
	if _, _, err := lineStats(context.Background(), panics, object.Changes{ch}); !errors.Is(err, ErrHostile) {
		t.Errorf("lineStats with a panicking reader = %v; want ErrHostile", err)
	}
	if _, _, _, err := (&transfer{}).safeRead(want{hash: plumbing.NewHash("1234"), typ: plumbing.TreeObject}); !errors.Is(err, ErrHostile) {
		t.Errorf("safeRead on a transfer with no workspace = %v; want ErrHostile", err)
	}
}

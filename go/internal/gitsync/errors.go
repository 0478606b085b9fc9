package gitsync

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoChanges means the sandbox has nothing the host lacks (exit 2).
var ErrNoChanges = errors.New("no changes to sync")

// ErrManualMerge is matched (errors.Is) by every *ManualMergeError (exit 3).
var ErrManualMerge = errors.New("manual merge needed")

// Why a fast-forward did not happen.
const (
	KindDiverged    = "diverged"     // the host branch has commits the sandbox's lacks
	KindDirty       = "dirty"        // the fast-forward would overwrite uncommitted host files
	KindDetached    = "detached"     // the host's HEAD is on no branch
	KindMergeFailed = "merge-failed" // the host's git refused the fast-forward
)

// ManualMergeError says the sandbox's commits were fetched into Ref but the host's
// branch and working tree were left exactly as they were; Commands are what the
// user can run by hand.
type ManualMergeError struct {
	Kind     string   `json:"kind"`
	Branch   string   `json:"branch"`           // host branch ("" when detached)
	Ref      string   `json:"ref"`              // remote-tracking ref holding the sandbox's commits
	Files    []string `json:"files,omitempty"`  // KindDirty: the host files in the way
	Detail   string   `json:"detail,omitempty"` // KindMergeFailed: what git said
	Commands []string `json:"commands"`
}

func (e *ManualMergeError) Is(target error) bool { return target == ErrManualMerge }

func (e *ManualMergeError) Error() string {
	switch e.Kind {
	case KindDiverged:
		return fmt.Sprintf("branch %q has diverged from the sandbox's %q: merge or rebase by hand", e.Branch, e.Ref)
	case KindDirty:
		return fmt.Sprintf("fast-forward of %q would overwrite uncommitted changes in %s", e.Branch, quoteList(e.Files, 5))
	case KindDetached:
		return fmt.Sprintf("HEAD is detached: the sandbox's commits are in %q, merge them by hand", e.Ref)
	}
	return fmt.Sprintf("fast-forward of %q to %q failed: %s", e.Branch, e.Ref, e.Detail)
}

func quoteList(s []string, max int) string {
	var q []string
	for i, x := range s {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(s)-max))
			break
		}
		q = append(q, fmt.Sprintf("%q", x))
	}
	return strings.Join(q, ", ")
}

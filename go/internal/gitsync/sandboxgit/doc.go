// Package sandboxgit reads a git repository whose bytes a sandbox controls: the
// workspace's .git, written by the agent, and therefore hostile. It is the whole
// boundary between those bytes and keystone:
//
//   - confinement: every file is opened through an os.Root of .git, so a
//     symbolic link cannot lead out of it; layouts that borrow objects from
//     elsewhere (a gitdir file, alternates, commondir) and object formats other
//     than SHA-1 are refused (Open);
//   - bounds: every size read from the repository (an object's header, a
//     delta's target size, an index's object count, a ref file) is checked
//     against the file it came from and against the limits in limits.go before
//     anything is allocated; delta chains have a maximum depth;
//   - verification: objects read whole are hashed against their name
//     (ReadObject); tree entries are checked as git fsck checks them
//     (ParseTree) and branch names as check-ref-format does (CheckBranchName).
//
// It never runs git, never writes, and never panics on any input: every parser
// here has a fuzz target (fuzz_test.go). Refusals wrap ErrHostile.
package sandboxgit

import (
	"errors"
	"fmt"
)

// ErrHostile wraps every refusal caused by the repository's content: bytes no
// honest git writes (a corrupt object, a crafted tree entry, a bad ref name) or
// sizes over the limits.
var ErrHostile = errors.New("workspace repository rejected")

func hostile(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrHostile}, args...)...)
}

// LimitError is a refusal because something is larger than a limit of limits.go.
// It wraps ErrHostile.
type LimitError struct {
	What  string // "object 1234abc", "packed-refs"
	Size  int64
	Limit int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %s is %s, more than the %s a sync accepts", ErrHostile, e.What, byteSize(e.Size), byteSize(e.Limit))
}

func (e *LimitError) Unwrap() error { return ErrHostile }

func tooLarge(what string, size, limit int64) error {
	return &LimitError{What: what, Size: size, Limit: limit}
}

// byteSize prints n in the largest binary unit that keeps it readable.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

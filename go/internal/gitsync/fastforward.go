package gitsync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// checkFastForward returns why the host branch cannot simply move, or nil.
func (s *syncer) checkFastForward(ctx context.Context) *ManualMergeError {
	r := s.rep
	if r.Branch == "" {
		return &ManualMergeError{Kind: KindDetached, Ref: r.Ref, Commands: []string{
			"git switch <branch>", "git merge --ff-only " + r.Ref}}
	}
	tip := plumbing.NewHash(r.To)
	ok, err := s.isAncestor(ctx, s.head, tip)
	if err != nil || !ok {
		return &ManualMergeError{Kind: KindDiverged, Branch: r.Branch, Ref: r.Ref, Commands: []string{
			"git merge " + r.Ref, "git rebase " + r.Ref}}
	}
	res := <-s.dirty
	dirty, err := res.paths, res.err
	if err != nil {
		return &ManualMergeError{Kind: KindMergeFailed, Branch: r.Branch, Ref: r.Ref,
			Detail: err.Error(), Commands: []string{"git merge --ff-only " + r.Ref}}
	}
	if in := overlap(s.paths, dirty); len(in) > 0 {
		return &ManualMergeError{Kind: KindDirty, Branch: r.Branch, Ref: r.Ref, Files: in, Commands: []string{
			"git stash push --include-untracked", "git merge --ff-only " + r.Ref, "git stash pop"}}
	}
	return nil
}

type dirtyResult struct {
	paths []string
	err   error
}

// dirtyPaths lists modified, staged, untracked and ignored paths of the host's
// working tree (ignored ones too: git would overwrite them silently).
func (s *syncer) dirtyPaths(ctx context.Context) ([]string, error) {
	out, err := s.git.run(ctx, nil, "status", "--porcelain=v1", "-z", "--no-renames",
		"--untracked-files=normal", "--ignored=traditional")
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range strings.Split(string(out), "\x00") {
		if len(e) > 3 {
			paths = append(paths, strings.TrimSuffix(e[3:], "/"))
		}
	}
	return paths, nil
}

// overlap returns the dirty paths that an incoming path equals, lies inside or contains.
func overlap(incoming, dirty []string) []string {
	set := map[string]bool{}
	for _, p := range incoming {
		for q := p; q != "."; q = filepath.Dir(q) {
			set[q] = true
		}
	}
	exact := map[string]bool{}
	for _, p := range incoming {
		exact[p] = true
	}
	var out []string
	for _, d := range dirty {
		hit := set[d]
		for q := filepath.Dir(d); !hit && q != "."; q = filepath.Dir(q) {
			hit = exact[q]
		}
		if hit {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// checkoutCutShort tells from git merge's message whether its checkout
// stopped on a file it could not write. Only then is there anything to put
// back; a merge refused before writing (another git holds index.lock, and
// may be writing the same files) is left alone.
func checkoutCutShort(msg string) bool {
	return strings.Contains(msg, "unable to write file") || strings.Contains(msg, "unable to create file") ||
		hostFault(nil, msg)
}

// undoFailedMerge puts back what a failed fast-forward wrote. git's checkout
// stops on a file it cannot write (the host's disk full) with HEAD and the
// index unchanged, but the files before it updated, that one cut short and
// new ones left untracked: the next sync found them in its way, and the
// commands it printed would have stashed the broken files. Every path the
// fast-forward touches was clean before it (checkFastForward), so putting
// them back as HEAD has them loses nothing of the user's.
func (s *syncer) undoFailedMerge(ctx context.Context) error {
	// traditional with all: every file in an ignored directory is listed
	out, err := s.git.run(ctx, nil, "status", "--porcelain=v1", "-z", "--no-renames",
		"--untracked-files=all", "--ignored=traditional")
	if err != nil {
		return err
	}
	added, inHead := map[string]bool{}, map[string]bool{}
	for _, c := range s.changes {
		if c.From.Name == "" {
			added[c.To.Name] = true
		} else {
			inHead[c.From.Name] = true
		}
	}
	root, err := os.OpenRoot(s.dirs.top)
	if err != nil {
		return err
	}
	defer root.Close()
	var restore bytes.Buffer
	var errs []error
	for _, e := range strings.Split(string(out), "\x00") {
		if len(e) < 4 {
			continue
		}
		xy, path := e[:2], e[3:]
		switch {
		case (xy == "??" || xy == "!!") && added[path]:
			// git lists no path below a link: every directory on the way is real
			errs = append(errs, root.Remove(path))
			// and the directories the checkout made for it, once empty
			for dir := filepath.Dir(path); dir != "."; dir = filepath.Dir(dir) {
				if root.Remove(dir) != nil {
					break
				}
			}
		case inHead[path]:
			restore.WriteString(path + "\x00")
		}
	}
	if restore.Len() > 0 {
		_, err := s.git.run(ctx, restore.Bytes(), "--literal-pathspecs", "checkout", "HEAD",
			"--pathspec-from-file=-", "--pathspec-file-nul")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

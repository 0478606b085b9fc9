package gitsync

import (
	"context"
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

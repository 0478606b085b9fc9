package gitsync

import (
	"context"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Ancestry is exact, and never uses commit dates (a sandbox sets its clock at
// will). It splits every question in two: the commits arriving with this sync
// are walked in memory (a host commit cannot reach them: the host is complete),
// and the host commits where that walk stops are handed to the host's git, which
// answers from its own repository alone.

// union reads objects from the host, and the commits and trees arriving with
// this sync from the transfer (they were checked by the walk).
type union struct {
	storer.EncodedObjectStorer // the host
	incoming                   *transfer
}

func (u *union) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	o, ok, err := u.incoming.object(h)
	if err != nil || !ok {
		if err == nil {
			return u.EncodedObjectStorer.EncodedObject(t, h)
		}
		return nil, err
	}
	if t != plumbing.AnyObject && o.Type() != t {
		return nil, plumbing.ErrObjectNotFound
	}
	return o, nil
}

// Commit is one incoming commit.
type Commit struct {
	Hash    string `json:"hash"`
	Subject string `json:"subject"`
}

// incomingFrom walks the arriving commits reachable from tip, children before
// parents, and returns them with the host commits the walk stopped at.
func (s *syncer) incomingFrom(tip plumbing.Hash) (commits []plumbing.Hash, boundary []plumbing.Hash) {
	if tip.IsZero() {
		return nil, nil
	}
	type frame struct {
		h       plumbing.Hash
		parents []plumbing.Hash
		next    int // index of the parent to visit next
	}
	seen := map[plumbing.Hash]bool{}
	var post []plumbing.Hash
	var stack []frame
	visit := func(h plumbing.Hash) {
		seen[h] = true
		if c, ok := s.tr.commits[h]; ok {
			stack = append(stack, frame{h: h, parents: c.Parents})
		} else {
			boundary = append(boundary, h)
		}
	}
	visit(tip)
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next == len(top.parents) {
			post = append(post, top.h)
			stack = stack[:len(stack)-1]
			continue
		}
		p := top.parents[top.next]
		top.next++
		if !seen[p] {
			visit(p)
		}
	}
	for i := len(post) - 1; i >= 0; i-- { // reversed post-order: children first
		commits = append(commits, post[i])
	}
	return commits, boundary
}

// rangeCommits lists the commits reachable from b but not from the host commit
// a (`git rev-list a..b`), children before parents, and how many of them
// arrive with this sync.
func (s *syncer) rangeCommits(ctx context.Context, a, b plumbing.Hash) ([]Commit, int, error) {
	news, boundary := s.incomingFrom(b)
	out := make([]Commit, 0, len(news))
	for _, h := range news {
		out = append(out, Commit{Hash: h.String()[:7], Subject: s.tr.commits[h].Subject})
	}
	old, err := s.hostRange(ctx, boundary, a)
	return append(out, old...), len(news), err
}

// hostRange lists the host commits reachable from tips but not from a, asking
// the host's git (nothing when every tip is a).
func (s *syncer) hostRange(ctx context.Context, tips []plumbing.Hash, a plumbing.Hash) ([]Commit, error) {
	args := []string{"rev-list", "--topo-order", "--no-commit-header", "--format=%H%x00%s"}
	for _, h := range tips {
		if h != a {
			args = append(args, h.String())
		}
	}
	if len(args) == 4 {
		return nil, nil
	}
	if !a.IsZero() {
		args = append(args, "--not", a.String())
	}
	out, err := s.git.run(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	var commits []Commit
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if h, subj, ok := strings.Cut(line, "\x00"); ok {
			commits = append(commits, Commit{Hash: h[:min(len(h), 7)], Subject: subj})
		}
	}
	return commits, nil
}

// isAncestor reports whether the host commit a is reachable from b.
func (s *syncer) isAncestor(ctx context.Context, a, b plumbing.Hash) (bool, error) {
	if a.IsZero() || a == b {
		return true, nil
	}
	if b.IsZero() {
		return false, nil
	}
	_, boundary := s.incomingFrom(b)
	return s.git.reaches(ctx, boundary, a)
}

// reaches reports whether the host commit a is reachable from one of tips, in
// the host repository.
func (g hostGit) reaches(ctx context.Context, tips []plumbing.Hash, a plumbing.Hash) (bool, error) {
	args := []string{"rev-list", "--count", a.String(), "--not"}
	for _, h := range tips {
		if h == a {
			return true, nil
		}
		args = append(args, h.String())
	}
	if len(tips) == 0 {
		return false, nil
	}
	out, err := g.run(ctx, nil, args...)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(out)) == "0", nil
}

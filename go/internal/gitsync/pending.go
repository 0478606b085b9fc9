package gitsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// Pending counts the commits on the sandbox's branch (the one named like the
// host's current branch, or the sandbox's HEAD when the host's is detached)
// that the host's branch lacks, for `status`: it changes nothing and reads
// only the sandbox's new commits, verified as a sync reads them, never a tree or
// a file; the host's part of the count, if any, comes from the host's git.
func Pending(ctx context.Context, o Options) (n int, err error) {
	defer func() {
		if p := recover(); p != nil { // as in Sync: the watcher and status carry on
			n, err = 0, fmt.Errorf("%w: counting the pending commits stopped on an internal error: %v", ErrHostile, p)
		}
	}()
	if o.Git == "" {
		if o.Git, err = TrustedGit(); err != nil {
			return 0, err
		}
	}
	g := hostGit{bin: o.Git, dir: o.HostRepo}
	dirs, err := g.dirs(ctx)
	if err != nil {
		return 0, err
	}
	ws, err := sandboxgit.Open(o.Workspace)
	if err != nil {
		return 0, err
	}
	defer ws.Close()
	branches, err := ws.Branches()
	if err != nil {
		return 0, err
	}
	head, name, err := hostHead(dirs)
	if err != nil {
		return 0, err
	}
	if name == "" {
		name = ws.HeadBranch()
	}
	var tip plumbing.Hash
	for _, b := range branches {
		if b.Name == name {
			tip = b.Hash
		}
	}
	if tip.IsZero() || tip == head {
		return 0, nil
	}
	have, err := newObjectSet(filepath.Join(dirs.common, "objects"))
	if err != nil {
		return 0, err
	}
	news, boundary, err := newCommitsFrom(ctx, ws, have.has, tip)
	if err != nil {
		return 0, err
	}
	args := []string{"rev-list", "--count"}
	for _, h := range boundary {
		if h != head {
			args = append(args, h.String())
		}
	}
	if len(args) == 2 {
		return news, nil
	}
	if !head.IsZero() {
		args = append(args, "--not", head.String())
	}
	out, err := g.run(ctx, nil, args...)
	if err != nil {
		return 0, err
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(out)))
	return news + old, err
}

// newCommitsFrom counts the commits reachable from tip that the host lacks,
// and returns the host commits where the count stopped.
func newCommitsFrom(ctx context.Context, ws *sandboxgit.Repo, have func(plumbing.Hash) bool, tip plumbing.Hash) (int, []plumbing.Hash, error) {
	seen := map[plumbing.Hash]bool{tip: true}
	var boundary []plumbing.Hash
	n := 0
	for stack := []plumbing.Hash{tip}; len(stack) > 0; {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if have(h) {
			boundary = append(boundary, h)
			continue
		}
		_, data, err := ws.ReadObject(h, plumbing.CommitObject, sandboxgit.MaxMetaSize)
		if err != nil {
			return 0, nil, fmt.Errorf("cannot read commit %s: %w", h, err)
		}
		c, err := sandboxgit.ParseCommit(data)
		if err != nil {
			return 0, nil, fmt.Errorf("commit %s: %w", h, err)
		}
		n++
		for _, p := range c.Parents {
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	return n, boundary, nil
}

// hostHead is the host's HEAD commit and branch ("" when detached; a zero
// hash on an unborn branch).
func hostHead(dirs hostDirs) (plumbing.Hash, string, error) {
	b, err := os.ReadFile(filepath.Join(dirs.gitDir, "HEAD"))
	if err != nil {
		return plumbing.ZeroHash, "", err
	}
	head := strings.TrimSpace(string(b))
	branch, ok := strings.CutPrefix(head, "ref: refs/heads/")
	if !ok {
		return plumbing.NewHash(head), "", nil
	}
	st := openStorage(dirs.common)
	defer st.Close()
	if r, err := st.Reference(plumbing.NewBranchReferenceName(branch)); err == nil {
		return r.Hash(), branch, nil
	}
	return plumbing.ZeroHash, branch, nil
}

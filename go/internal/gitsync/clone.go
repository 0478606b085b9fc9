package gitsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Clone makes workspace a new repository holding the host repository's committed
// history: every local branch and tag, HEAD's branch checked out. Nothing
// uncommitted travels, no object is hardlinked or borrowed through alternates,
// and the host repository is only read. Both sides are handled in-process; the
// trusted git only resolves the host's directories. On failure the workspace is
// removed again.
func Clone(ctx context.Context, hostRepo, workspace string) (err error) {
	bin, err := TrustedGit()
	if err != nil {
		return err
	}
	dirs, err := hostGit{bin: bin, dir: hostRepo}.dirs(ctx)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(workspace); err == nil && len(entries) > 0 {
		return fmt.Errorf("cannot clone into %q: directory is not empty", workspace)
	}
	if err := os.MkdirAll(workspace, 0o755); err != nil {
		return fmt.Errorf("cannot create workspace %q: %w", workspace, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(workspace)
		}
	}()
	if err := cloneInto(ctx, dirs, workspace); err != nil {
		return fmt.Errorf("failed to clone %q into %q: %w", hostRepo, workspace, err)
	}
	return nil
}

func cloneInto(ctx context.Context, dirs hostDirs, workspace string) error {
	host := openStorage(dirs.common)
	defer host.Close()
	if _, err := git.PlainInit(workspace, false); err != nil {
		return err
	}
	ws := openStorage(filepath.Join(workspace, ".git"))
	defer ws.Close()
	it, err := host.IterReferences()
	if err != nil {
		return err
	}
	var refs []*plumbing.Reference
	var tips []want
	err = it.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference && (r.Name().IsBranch() || r.Name().IsTag()) {
			refs = append(refs, r)
			tips = append(tips, want{hash: r.Hash(), typ: plumbing.AnyObject})
		}
		return nil
	})
	if err != nil {
		return err
	}
	headFile, err := os.ReadFile(filepath.Join(dirs.gitDir, "HEAD"))
	if err != nil {
		return err
	}
	head := strings.TrimSpace(string(headFile))
	var headRef *plumbing.Reference
	if target, ok := strings.CutPrefix(head, "ref: "); ok {
		headRef = plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.ReferenceName(target))
	} else {
		headRef = plumbing.NewHashReference(plumbing.HEAD, plumbing.NewHash(head))
	}
	if headRef.Type() == plumbing.HashReference {
		tips = append(tips, want{hash: headRef.Hash(), typ: plumbing.CommitObject})
	}
	tr := newTransfer(host, func(h plumbing.Hash) bool { return false }, false)
	if err := tr.walk(ctx, tips); err != nil {
		return err
	}
	if _, err := tr.writePack(ctx, filepath.Join(workspace, ".git", "objects")); err != nil {
		return err
	}
	for _, r := range refs {
		if err := ws.SetReference(r); err != nil {
			return err
		}
	}
	if err := ws.SetReference(headRef); err != nil {
		return err
	}
	// Reopen so that go-git sees the pack written behind its back.
	final := openStorage(filepath.Join(workspace, ".git"))
	defer final.Close()
	repo, err := git.Open(final, osfs.New(workspace))
	if err != nil {
		return err
	}
	commit, err := repo.ResolveRevision(plumbing.Revision("HEAD"))
	if err != nil {
		return nil // an empty repository: nothing to check out
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	return wt.Reset(&git.ResetOptions{Commit: *commit, Mode: git.HardReset})
}

package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// asideSuffix names the directory a clone is built in, next to the workspace.
const asideSuffix = ".keystone-clone"

// Clone makes workspace a new repository holding the host repository's committed
// history: every local branch and tag, HEAD's branch checked out. Nothing
// uncommitted travels, no object is hardlinked or borrowed through alternates,
// and the host repository is only read: the host's git packs the history
// (`pack-objects`, in the host repository) straight into its own `index-pack
// --strict`, which verifies it into the new repository (install.go); the
// checkout is in-process, so no filter, hook or LFS of the host runs.
//
// The clone is built next to the workspace and renamed into place when
// complete: a clone killed half-way leaves no workspace, only a directory the
// next Clone removes.
func Clone(ctx context.Context, hostRepo, workspace string) error {
	return CloneSteps(ctx, hostRepo, workspace, nil)
}

// CloneSteps is Clone, telling step (when not nil) what it does as it goes:
// the host git's own progress while it packs the history ("Counting
// objects: 45% (4500/10000)"), then the checkout. For a progress line.
func CloneSteps(ctx context.Context, hostRepo, workspace string, step func(string)) error {
	if step == nil {
		step = func(string) {}
	}
	bin, err := TrustedGit()
	if err != nil {
		return err
	}
	g := hostGit{bin: bin, dir: hostRepo}
	dirs, err := g.dirs(ctx)
	if err != nil {
		return err
	}
	// The workspace, sync and go-git's storage read SHA-1 names only.
	if out, err := g.run(ctx, nil, "rev-parse", "--show-object-format"); err != nil {
		return err
	} else if f := strings.TrimSpace(string(out)); f != "sha1" {
		return fmt.Errorf("%q uses object format %q: keystone supports SHA-1 repositories only", hostRepo, f)
	}
	if entries, err := os.ReadDir(workspace); err == nil && len(entries) > 0 {
		return fmt.Errorf("cannot clone into %q: directory is not empty", workspace)
	}
	aside := workspace + asideSuffix
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("cannot remove the unfinished clone %q: %w", aside, err)
	}
	if err := os.MkdirAll(aside, 0o755); err != nil {
		return fmt.Errorf("cannot create workspace %q: %w", workspace, err)
	}
	if err := cloneInto(ctx, g, dirs, aside, step); err != nil {
		os.RemoveAll(aside)
		return fmt.Errorf("failed to clone %q into %q: %w", hostRepo, workspace, err)
	}
	os.Remove(workspace) // an empty directory made by the caller
	if err := os.Rename(aside, workspace); err != nil {
		os.RemoveAll(aside)
		return fmt.Errorf("failed to clone %q into %q: %w", hostRepo, workspace, err)
	}
	return nil
}

func cloneInto(ctx context.Context, g hostGit, dirs hostDirs, dir string, step func(string)) error {
	if _, err := git.PlainInit(dir, false); err != nil {
		return err
	}
	refs, headRef, err := hostRefs(dirs)
	if err != nil {
		return err
	}
	var tips []plumbing.Hash
	for _, r := range refs {
		tips = append(tips, r.Hash())
	}
	if headRef.Type() == plumbing.HashReference {
		tips = append(tips, headRef.Hash())
	}
	gitDir := filepath.Join(dir, ".git")
	if len(tips) > 0 {
		if err := copyObjects(ctx, g, tips, filepath.Join(gitDir, "objects"), step); err != nil {
			return err
		}
	}
	ws := openStorage(gitDir)
	defer ws.Close()
	for _, r := range append(refs, headRef) {
		if err := ws.SetReference(r); err != nil {
			return err
		}
	}
	repo, err := git.Open(ws, osfs.New(dir))
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
	if headRef.Type() == plumbing.SymbolicReference {
		step("checking out " + headRef.Target().Short())
	} else {
		step("checking out " + commit.String()[:12])
	}
	return wt.Reset(&git.ResetOptions{Commit: *commit, Mode: git.HardReset})
}

// hostRefs lists the host's local branches and tags, and its HEAD.
func hostRefs(dirs hostDirs) ([]*plumbing.Reference, *plumbing.Reference, error) {
	host := openStorage(dirs.common)
	defer host.Close()
	it, err := host.IterReferences()
	if err != nil {
		return nil, nil, err
	}
	var refs []*plumbing.Reference
	err = it.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference && (r.Name().IsBranch() || r.Name().IsTag()) {
			refs = append(refs, r)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	headFile, err := os.ReadFile(filepath.Join(dirs.gitDir, "HEAD"))
	if err != nil {
		return nil, nil, err
	}
	head := strings.TrimSpace(string(headFile))
	if target, ok := strings.CutPrefix(head, "ref: "); ok {
		return refs, plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.ReferenceName(target)), nil
	}
	return refs, plumbing.NewHashReference(plumbing.HEAD, plumbing.NewHash(head)), nil
}

// copyObjects pipes the host's `git pack-objects` of everything reachable from
// tips into index-pack, and installs the verified pack in objectsDir.
func copyObjects(ctx context.Context, g hostGit, tips []plumbing.Hash, objectsDir string, step func(string)) error {
	var list strings.Builder
	for _, h := range tips {
		list.WriteString(h.String() + "\n")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	in, err := startIncoming(ctx, g, objectsDir, false, r, 0, nil)
	if err != nil {
		return err
	}
	pack := g.command(ctx, "pack-objects", "--revs", "--stdout", "--delta-base-offset", "--progress")
	var stderr bytes.Buffer
	pack.Stdin, pack.Stdout, pack.Stderr = strings.NewReader(list.String()), w, &progressLines{step: step, other: &stderr}
	if err := pack.Start(); err != nil {
		in.abort()
		return fmt.Errorf("cannot run git pack-objects: %w", err)
	}
	r.Close() // the children hold their ends: EOF reaches index-pack when pack-objects exits
	w.Close()
	perr := pack.Wait()
	sum, err := in.finish(tips)
	if perr != nil {
		in.abort()
		return fmt.Errorf("git pack-objects: %s", strings.TrimSpace(stderr.String()))
	}
	if err == nil {
		err = in.publish(sum)
	}
	if err != nil {
		in.abort()
		return err
	}
	return in.install(objectsDir)
}

// progressLines passes git's progress lines ("Writing objects:  40% (4/10)",
// redrawn with \r) to step and keeps every other line for the error message.
type progressLines struct {
	step    func(string)
	other   *bytes.Buffer
	partial []byte
}

func (p *progressLines) Write(b []byte) (int, error) {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			if len(p.partial) < 1024 {
				p.partial = append(p.partial, c)
			}
			continue
		}
		line := string(p.partial)
		p.partial = p.partial[:0]
		switch {
		case strings.Contains(line, "objects: "):
			p.step(strings.TrimSpace(line))
		case strings.TrimSpace(line) != "":
			p.other.WriteString(line + "\n")
		}
	}
	return len(b), nil
}

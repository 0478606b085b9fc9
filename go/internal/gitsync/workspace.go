package gitsync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// storageOptions keep pack files open between reads (the caller closes the
// storage). No LargeObjectThreshold: go-git's streaming delta reader, used for
// objects above it, loses its place in the base after a backward copy and
// returns wrong content (a valid blob of nixpkgs.lib was called corrupt).
var storageOptions = filesystem.Options{KeepDescriptors: true, MaxOpenDescriptors: 64}

// openStorage opens a trusted git directory (the host's, or a workspace this
// process is creating) in-process.
func openStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRUDefault(), storageOptions)
}

// maxIndexFile bounds the workspace's .git/index, which go-git parses to list
// uncommitted files.
const maxIndexFile = 256 << 20

type listing struct {
	files []Uncommitted
	err   error
}

// listUncommitted lists what the sandbox has not committed, with go-git's
// worktree status: the index is read through an os.Root after a size check,
// working files through osfs's bound mode (no link leads out), and a panic of
// go-git's parsers becomes the listing's error.
func listUncommitted(workspace string) (l listing) {
	l.files = []Uncommitted{}
	defer func() {
		if p := recover(); p != nil {
			l.err = fmt.Errorf("cannot list the sandbox's uncommitted files: %v", p)
		}
	}()
	ws, err := sandboxgit.Open(workspace) // the same layout checks
	if err != nil {
		l.err = err
		return l
	}
	ws.Close()
	gitDir := filepath.Join(workspace, ".git")
	if fi, err := os.Lstat(filepath.Join(gitDir, "index")); err == nil && fi.Size() > maxIndexFile {
		l.err = &sandboxgit.LimitError{What: ".git/index", Size: fi.Size(), Limit: maxIndexFile}
		return l
	}
	root, err := openRootFS(gitDir)
	if err != nil {
		l.err = err
		return l
	}
	defer root.Close()
	st := filesystem.NewStorageWithOptions(root, cache.NewObjectLRUDefault(), storageOptions)
	defer st.Close()
	r, err := git.Open(st, osfs.New(workspace, osfs.WithBoundOS()))
	if err != nil {
		l.err = err
		return l
	}
	wt, err := r.Worktree()
	if err != nil {
		l.err = err
		return l
	}
	status, err := wt.Status()
	if err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		l.err = err
		return l
	}
	for p, fs := range status {
		if fs.Staging == git.Unmodified && fs.Worktree == git.Unmodified {
			continue
		}
		l.files = append(l.files, Uncommitted{Path: p, Status: string([]byte{byte(fs.Staging), byte(fs.Worktree)})})
	}
	sort.Slice(l.files, func(i, j int) bool { return l.files[i].Path < l.files[j].Path })
	return l
}

package gitsync

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
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

// openWorkspace opens the workspace's repository for reading, refusing the layouts
// that would make go-git read outside it: a .git that is a file or a link (gitdir:
// pointers), alternates, a common dir, or an object format go-git cannot verify.
func openWorkspace(workspace string) (*filesystem.Storage, string, error) {
	gitDir := filepath.Join(workspace, ".git")
	fi, err := os.Lstat(gitDir)
	if err != nil {
		return nil, "", fmt.Errorf("workspace %q has no git repository: %w", workspace, err)
	}
	if !fi.IsDir() {
		return nil, "", hostile("%q is not a directory", gitDir)
	}
	for _, p := range []string{"objects/info/alternates", "objects/info/http-alternates", "commondir"} {
		if _, err := os.Lstat(filepath.Join(gitDir, p)); err == nil {
			return nil, "", hostile("%q exists: the workspace must not borrow objects from elsewhere", filepath.Join(gitDir, p))
		}
	}
	// Every read goes through an os.Root: a symbolic link inside .git cannot lead
	// go-git out of it.
	root, err := openRootFS(gitDir)
	if err != nil {
		return nil, "", err
	}
	st := filesystem.NewStorageWithOptions(root, cache.NewObjectLRUDefault(), storageOptions)
	cfg, err := st.Config()
	if err != nil {
		return nil, "", hostile("cannot read the workspace's git config: %v", err)
	}
	if f := cfg.Extensions.ObjectFormat; f != "" && !strings.EqualFold(string(f), "sha1") {
		return nil, "", hostile("workspace uses object format %q; only sha1 is supported", f)
	}
	return st, gitDir, nil
}

// branch is one local branch of the workspace.
type branch struct {
	name string // without refs/heads/
	hash plumbing.Hash
}

// workspaceBranches lists refs/heads/* of the workspace (sorted), refusing names the
// host's git could not store, and its HEAD branch ("" when detached or unreadable).
func workspaceBranches(st *filesystem.Storage) ([]branch, string, error) {
	it, err := st.IterReferences()
	if err != nil {
		return nil, "", hostile("cannot list the workspace's branches: %v", err)
	}
	var out []branch
	err = it.ForEach(func(r *plumbing.Reference) error {
		if !r.Name().IsBranch() || r.Type() != plumbing.HashReference {
			return nil
		}
		b := strings.TrimPrefix(r.Name().String(), "refs/heads/")
		if err := checkBranchName(b); err != nil {
			return err
		}
		out = append(out, branch{b, r.Hash()})
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	head := ""
	if r, err := st.Reference(plumbing.HEAD); err == nil && r.Type() == plumbing.SymbolicReference && r.Target().IsBranch() {
		head = strings.TrimPrefix(r.Target().String(), "refs/heads/")
	}
	return out, head, nil
}

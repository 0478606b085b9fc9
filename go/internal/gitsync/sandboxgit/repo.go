package sandboxgit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/keystone-agent/keystone/internal/untrusted"
)

// Repo is a workspace repository opened for reading.
type Repo struct {
	gitDir  string
	root    *os.Root // the .git directory: every read goes through it
	packs   []*Pack  // loaded by loadPacks
	loaded  bool
	loadErr error
	cache   *baseCache
}

// Open opens workspace/.git for reading, refusing the layouts that would make a
// reader leave it: a .git that is a file or a link (gitdir: pointers),
// alternates, a common dir, and object formats or ref storage other than
// SHA-1 objects and files.
func Open(workspace string) (*Repo, error) {
	gitDir := filepath.Join(workspace, ".git")
	fi, err := os.Lstat(gitDir)
	if err != nil {
		return nil, fmt.Errorf("workspace %q has no git repository: %w", workspace, err)
	}
	if !fi.IsDir() {
		return nil, hostile("%q is not a directory", gitDir)
	}
	root, err := os.OpenRoot(gitDir)
	if err != nil {
		return nil, fmt.Errorf("cannot open %q: %w", gitDir, err)
	}
	r := &Repo{gitDir: gitDir, root: root, cache: newBaseCache(baseCacheBytes)}
	if err := r.checkLayout(); err != nil {
		root.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the repository's files.
func (r *Repo) Close() error {
	for _, p := range r.packs {
		p.close()
	}
	return r.root.Close()
}

// GitDir is the repository's .git directory.
func (r *Repo) GitDir() string { return r.gitDir }

func (r *Repo) checkLayout() error {
	for _, p := range []string{"objects/info/alternates", "objects/info/http-alternates", "commondir"} {
		if _, err := r.root.Lstat(p); err == nil {
			return hostile("%q exists: the workspace must not borrow objects from elsewhere", filepath.Join(r.gitDir, p))
		}
	}
	cfg, err := r.readSmall("config", MaxConfigSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return checkFormat(cfg)
}

// checkFormat refuses a repository whose objects or refs this package cannot
// read: git records both in .git/config's [extensions].
func checkFormat(cfg []byte) (err error) {
	defer func() {
		if p := recover(); p != nil { // the config decoder is go-git's
			err = hostile("cannot parse the workspace's git config")
		}
	}()
	c := config.New()
	if err := config.NewDecoder(bytes.NewReader(cfg)).Decode(c); err != nil {
		return hostile("cannot parse the workspace's git config: %v", err)
	}
	ext := c.Section("extensions")
	if f := ext.Option("objectformat"); f != "" && !strings.EqualFold(f, "sha1") {
		return hostile("workspace repository uses object format %q; sync supports SHA-1 repositories only", f)
	}
	if s := ext.Option("refstorage"); s != "" && !strings.EqualFold(s, "files") {
		return hostile("workspace repository keeps its refs in %q; sync supports the files backend only", s)
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// readSmall reads a regular file of the repository whole, refusing one larger
// than limit before reading it.
func (r *Repo) readSmall(name string, limit int64) ([]byte, error) {
	f, err := untrusted.Open(r.root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, hostile("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, tooLarge(name, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit { // it grew after the stat
		return nil, tooLarge(name, int64(len(b)), limit)
	}
	return b, nil
}

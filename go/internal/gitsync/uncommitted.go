package gitsync

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
	"github.com/keystone-agent/keystone/internal/untrusted"
)

// The sandbox's uncommitted files are listed as `git status --short` lists
// them, the way git works it out, without git and without reading every file:
// the index (parsed by sandboxgit, bounded) against HEAD's tree for what is
// staged; each indexed file's lstat against what the index recorded, its
// content hashed only when they differ; and the working tree walked for
// files the index lacks, minus the ignored ones. Every directory of the
// working tree is opened from its parent's descriptor with O_DIRECTORY and
// O_NOFOLLOW (entrydirs.go, walkDir): no link is followed, nothing but a
// directory is opened, and depth costs nothing. Files are opened through
// package untrusted (a FIFO never blocks).

// Limits of the listing (docs/sync.md, "Limits").
const (
	maxIndexFile     = 256 << 20 // .git/index
	maxIgnoreFile    = 1 << 20   // a .gitignore or info/exclude
	maxListed        = 10_000    // uncommitted files named; the count goes on
	maxUntrackedWalk = 1_000_000 // entries of the working tree looked at
)

type listing struct {
	files []Uncommitted
	err   error
}

// listUncommitted lists what the sandbox has not committed.
func listUncommitted(workspace string) (l listing) {
	l.files = []Uncommitted{}
	defer func() {
		if p := recover(); p != nil { // none is expected: the listing is best effort
			l.err = fmt.Errorf("cannot list the sandbox's uncommitted files: %v", p)
		}
	}()
	ws, err := sandboxgit.Open(workspace)
	if err != nil {
		l.err = err
		return l
	}
	defer ws.Close()
	root, err := os.OpenRoot(workspace)
	if err != nil {
		l.err = err
		return l
	}
	defer root.Close()
	dirs, err := openEntryDirs(workspace)
	if err != nil {
		l.err = err
		return l
	}
	defer dirs.close()
	st := &statusLister{ws: ws, root: root, dirs: dirs, codes: map[string][2]byte{}}
	l.err = st.list()
	for p, c := range st.codes {
		l.files = append(l.files, Uncommitted{Path: p, Status: string(c[:])})
	}
	sort.Slice(l.files, func(i, j int) bool { return l.files[i].Path < l.files[j].Path })
	if len(l.files) > maxListed {
		l.err = fmt.Errorf("%d uncommitted files; the first %d are listed", len(l.files), maxListed)
		l.files = l.files[:maxListed]
	}
	return l
}

type statusLister struct {
	ws        *sandboxgit.Repo
	root      *os.Root
	dirs      *entryDirs // the indexed files' directories
	index     *sandboxgit.DirCache
	indexTime time.Time // the index file's mtime: entries as new are racy
	codes     map[string][2]byte
	walked    int
}

func (s *statusLister) mark(p string, staged, worktree byte) {
	c, ok := s.codes[p]
	if !ok {
		c = [2]byte{' ', ' '}
	}
	if staged != 0 {
		c[0] = staged
	}
	if worktree != 0 {
		c[1] = worktree
	}
	s.codes[p] = c
}

func (s *statusLister) list() error {
	var err error
	if s.index, err = s.ws.ReadDirCache(maxIndexFile); err != nil {
		return err
	}
	if fi, err := s.root.Stat(".git/index"); err == nil {
		s.indexTime = fi.ModTime()
	}
	if err := s.staged(); err != nil {
		return err
	}
	indexed := map[string]bool{}
	for _, e := range s.index.Entries {
		indexed[e.Path] = true
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			indexed[d+"/"] = true
		}
		s.worktree(e)
	}
	return s.untracked(indexed)
}

// staged compares the index with HEAD's tree; an index whose cache-tree says
// it is HEAD's tree has nothing staged.
func (s *statusLister) staged() error {
	head, err := s.ws.Head()
	if err != nil {
		return err
	}
	var tree plumbing.Hash
	if !head.IsZero() {
		_, data, err := s.ws.ReadObject(head, plumbing.CommitObject, sandboxgit.MaxMetaSize)
		if err != nil {
			return err
		}
		c, err := sandboxgit.ParseCommit(data)
		if err != nil {
			return err
		}
		tree = c.Tree
	}
	if !tree.IsZero() && tree == s.index.RootTree {
		return nil
	}
	files := map[string]plumbing.Hash{}
	if !tree.IsZero() {
		if err := s.flatten(tree, "", files); err != nil {
			return err
		}
	}
	for _, e := range s.index.Entries {
		switch h, ok := files[e.Path]; {
		case e.Stage != 0:
			s.mark(e.Path, 'U', 'U')
		case e.IntentToAdd:
		case !ok:
			s.mark(e.Path, 'A', 0)
		case h != e.Hash:
			s.mark(e.Path, 'M', 0)
		}
		delete(files, e.Path)
	}
	for p := range files {
		s.mark(p, 'D', 0)
	}
	return nil
}

// flatten adds the files of a tree of HEAD (read and checked as a sync reads
// them) to files, by path.
func (s *statusLister) flatten(h plumbing.Hash, dir string, files map[string]plumbing.Hash) error {
	_, data, err := s.ws.ReadObject(h, plumbing.TreeObject, sandboxgit.MaxMetaSize)
	if err != nil {
		return err
	}
	var subdirs []string
	var hashes []plumbing.Hash
	err = sandboxgit.ParseTree(data, func(name []byte, mode sandboxgit.Mode, e plumbing.Hash) error {
		if mode == sandboxgit.ModeDir {
			subdirs, hashes = append(subdirs, dir+string(name)+"/"), append(hashes, e)
		} else {
			files[dir+string(name)] = e
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, d := range subdirs {
		if err := s.flatten(hashes[i], d, files); err != nil {
			return err
		}
	}
	return nil
}

// worktree compares one indexed file with the working tree: what lstat says
// first, the content only when that differs from what the index recorded.
func (s *statusLister) worktree(e sandboxgit.IndexEntry) {
	if e.Stage != 0 || e.SkipWorktree || e.Mode == 0o160000 {
		return
	}
	at, name := s.dirs.dir(e.Path), path.Base(e.Path)
	var st unix.Stat_t
	if at < 0 || unix.Fstatat(at, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		s.mark(e.Path, 0, 'D')
		return
	}
	typ := st.Mode & unix.S_IFMT
	isLink := e.Mode&0o170000 == 0o120000
	switch {
	case e.IntentToAdd:
		s.mark(e.Path, 0, 'A')
		return
	case isLink != (typ == unix.S_IFLNK), !isLink && typ != unix.S_IFREG:
		s.mark(e.Path, 0, 'M') // a file became a link, a directory…
		return
	case !isLink && (st.Mode&0o100 != 0) != (e.Mode&0o100 != 0):
		s.mark(e.Path, 0, 'M') // the executable bit
		return
	}
	mtime := time.Unix(st.Mtim.Unix())
	if uint32(st.Size) == e.Size && uint32(mtime.Unix()) == e.MtimeSec && uint32(mtime.Nanosecond()) == e.MtimeNsec &&
		mtime.Before(s.indexTime) {
		// As recorded, and older than the index to the nanosecond, as git
		// built with USE_NSEC compares: the kernel stamps a file and the
		// index from one coarse clock, so a file changed in the tick the
		// index was written has an mtime equal to it, and counts as racy.
		return
	}
	if uint32(st.Size) != e.Size || st.Size > sandboxgit.MaxBlobSize {
		s.mark(e.Path, 0, 'M')
		return
	}
	if h, err := hashFileAt(at, name, isLink, st.Size); err != nil || h != e.Hash {
		s.mark(e.Path, 0, 'M')
	}
}

// hashFileAt is the blob name of the working file name in the directory at
// (or of a link's target), read without following a link.
func hashFileAt(at int, name string, link bool, size int64) (plumbing.Hash, error) {
	var r io.Reader
	if link {
		target, err := readlinkAt(at, name)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		r, size = strings.NewReader(target), int64(len(target))
	} else {
		f, err := untrusted.OpenAt(at, name)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		defer f.Close()
		// The file opened, not the name fstatat saw: a FIFO put there
		// meanwhile is not read.
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return plumbing.ZeroHash, errors.New("changed while reading")
		}
		r = f
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", size)
	if n, err := io.Copy(h, io.LimitReader(r, size+1)); err != nil || n != size {
		return plumbing.ZeroHash, errors.New("changed while reading")
	}
	var sum plumbing.Hash
	h.Sum(sum[:0])
	return sum, nil
}

// untracked walks the working tree for files the index lacks and no ignore
// rule covers. A directory the index knows nothing of is one entry ("dir/"),
// as `git status` shows it; so is a nested repository.
func (s *statusLister) untracked(indexed map[string]bool) error {
	var rules []gitignore.Pattern
	if b, err := s.readIgnore(s.root, ".git/info/exclude"); err == nil {
		rules = parseIgnore(b, nil)
	}
	top, err := untrusted.OpenDirAt(s.dirs.top, ".")
	if err != nil {
		return err
	}
	defer top.Close()
	_, err = s.walkDir(top, nil, rules, indexed, false)
	return err
}

// walkDir lists the untracked files under dir (at: its path); with probe set
// it only reports whether there is one, for a directory the index does not
// know, which `git status` shows as "dir/" when it holds an untracked file.
// Each directory is opened from its parent's descriptor, O_DIRECTORY and
// O_NOFOLLOW (no link leads out, nothing else is opened), as a plain file:
// its entries' types come from the listing itself, where a directory opened
// through an os.Root has every entry lstat'ed.
func (s *statusLister) walkDir(dir *os.File, at []string, rules []gitignore.Pattern, indexed map[string]bool, probe bool) (bool, error) {
	dirfd := int(dir.Fd())
	if b, err := readIgnoreAt(dirfd, ".gitignore"); err == nil {
		rules = append(rules[:len(rules):len(rules)], parseIgnore(b, at)...)
	}
	match := gitignore.NewMatcher(rules)
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return false, nil
	}
	found := false
	for _, e := range entries {
		if s.walked++; s.walked > maxUntrackedWalk {
			return found, fmt.Errorf("the working tree has more than %d entries; untracked files are listed up to there", maxUntrackedWalk)
		}
		name := e.Name()
		if name == ".git" {
			if len(at) > 0 && probe {
				return true, nil // a nested repository
			}
			continue
		}
		p := append(at[:len(at):len(at)], name)
		rel := strings.Join(p, "/")
		isDir := e.IsDir()
		if match.Match(p, isDir) || (!isDir && indexed[rel]) {
			continue
		}
		if !isDir {
			if probe {
				return true, nil
			}
			s.mark(rel, '?', '?')
			continue
		}
		sub, err := untrusted.OpenDirAt(dirfd, name)
		if err != nil {
			continue // gone, or no longer a directory
		}
		known := indexed[rel+"/"]
		any, err := s.walkDir(sub, p, rules, indexed, probe || !known)
		sub.Close()
		if err != nil {
			return found, err
		}
		switch {
		case any && probe:
			return true, nil
		case any && !known:
			s.mark(rel+"/", '?', '?')
		}
		found = found || any
	}
	return found, nil
}

func (s *statusLister) readIgnore(dir *os.Root, name string) ([]byte, error) {
	f, err := untrusted.Open(dir, name)
	if err != nil {
		return nil, err
	}
	return readIgnoreFile(f)
}

// readIgnoreAt reads the ignore file name of the directory dirfd.
func readIgnoreAt(dirfd int, name string) ([]byte, error) {
	f, err := untrusted.OpenAt(dirfd, name)
	if err != nil {
		return nil, err
	}
	return readIgnoreFile(f)
}

// readIgnoreFile reads an opened ignore file, and closes it.
func readIgnoreFile(f *os.File) ([]byte, error) {
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > maxIgnoreFile {
		return nil, errors.New("not a regular ignore file of a sensible size")
	}
	return io.ReadAll(io.LimitReader(f, maxIgnoreFile))
}

func parseIgnore(b []byte, domain []string) []gitignore.Pattern {
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if line != "" && !strings.HasPrefix(line, "#") && strings.TrimSpace(line) != "" {
			ps = append(ps, gitignore.ParsePattern(line, domain))
		}
	}
	return ps
}

package gitsync

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// ErrHostile wraps every refusal caused by content of the workspace that no
// honest git would produce: crafted tree entries, corrupt objects, bad ref names.
var ErrHostile = fmt.Errorf("workspace repository rejected")

func hostile(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrHostile}, args...)...)
}

// checkBranchName applies git's check-ref-format rules to a branch name (the part
// after refs/heads/), so it can be placed under refs/remotes/keystone/<name>/
// without escaping it or confusing the host's git.
func checkBranchName(b string) error {
	if b == "" || b == "HEAD" || strings.HasPrefix(b, "-") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.Contains(b, "..") || strings.Contains(b, "//") ||
		strings.Contains(b, "@{") || b == "@" || strings.ContainsAny(b, " ~^:?*[\\\x7f") {
		return hostile("invalid branch name %q", b)
	}
	for _, c := range b {
		if c < 0x20 {
			return hostile("invalid branch name %q", b)
		}
	}
	for _, comp := range strings.Split(b, "/") {
		if strings.HasPrefix(comp, ".") || strings.HasSuffix(comp, ".lock") {
			return hostile("invalid branch name %q", b)
		}
	}
	return nil
}

// checkEntryNameBytes is checkEntryName without allocating for ordinary names.
func checkEntryNameBytes(name []byte) error {
	if len(name) == 0 || bytes.IndexByte(name, '/') >= 0 {
		return checkEntryName(string(name))
	}
	for _, c := range name {
		if c == '.' || c >= 0x80 || c == 'g' || c == 'G' {
			// only names with these can spell a special name: check them fully
			return checkEntryName(string(name))
		}
	}
	return nil
}

// checkEntryName refuses tree entry names that would step out of the checkout or
// into a .git directory on any file system git supports (the same family of names
// `git fsck` rejects: "..", ".git" in any case, NTFS/HFS spellings of it, "/").
func checkEntryName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return hostile("tree entry %q is not a valid file name", name)
	}
	trimmed := strings.TrimRight(strings.Map(dropIgnorable, name), ". ")
	if strings.EqualFold(trimmed, ".git") || strings.EqualFold(trimmed, "git~1") {
		return hostile("tree entry %q names a git directory", name)
	}
	return nil
}

// dropIgnorable removes the code points HFS+ ignores when comparing names, so that
// ".g\u200cit" is caught as ".git".
func dropIgnorable(r rune) rune {
	switch r {
	case 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e,
		0x206a, 0x206b, 0x206c, 0x206d, 0x206e, 0x206f, 0xfeff:
		return -1
	}
	return r
}

// parseTree reads a raw tree object, checking every entry as it goes: names
// (checkEntryName), modes, and git's order without duplicates, which `git fsck`
// also demands (two entries of one name could check out either). It returns what
// the entries point at.
func parseTree(h plumbing.Hash, dir string, data []byte) ([]want, error) {
	next := make([]want, 0, len(data)/40)
	var prev []byte
	files := make([][]byte, 0, len(data)/40) // sorted, as the tree is: a directory may not repeat one
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			return nil, hostile("tree %s is malformed", h)
		}
		mode := data[:sp]
		data = data[sp+1:]
		nul := bytes.IndexByte(data, 0)
		if nul < 0 || len(data) < nul+1+20 {
			return nil, hostile("tree %s is malformed", h)
		}
		nameb := data[:nul:nul]
		var target plumbing.Hash
		copy(target[:], data[nul+1:nul+21])
		data = data[nul+21:]
		if err := checkEntryNameBytes(nameb); err != nil {
			return nil, fmt.Errorf("%w (in tree %s)", err, h)
		}
		key := nameb
		switch string(mode) { // compared without allocating
		case "100644", "100755", "100664":
			files = append(files, nameb)
			next = append(next, want{hash: target, typ: plumbing.BlobObject, dir: dir, name: nameb})
		case "120000":
			switch strings.ToLower(string(nameb)) {
			case ".gitmodules", ".gitattributes", ".gitignore", ".mailmap":
				return nil, hostile("tree entry %q is a symbolic link (in tree %s)", nameb, h)
			}
			files = append(files, nameb)
			next = append(next, want{hash: target, typ: plumbing.BlobObject, dir: dir, name: nameb})
		case "40000":
			key = append(nameb, '/') // nameb has no spare capacity: this copies
			if _, found := slices.BinarySearchFunc(files, nameb, bytes.Compare); found {
				return nil, hostile("tree %s repeats %q", h, nameb)
			}
			next = append(next, want{hash: target, typ: plumbing.TreeObject, path: dir + string(nameb) + "/"})
		case "160000":
			// a gitlink names a commit of another repository: nothing to copy
			files = append(files, nameb)
		default:
			return nil, hostile("tree entry %q has invalid mode %s (in tree %s)", nameb, mode, h)
		}
		if bytes.Compare(key, prev) <= 0 {
			return nil, hostile("tree %s is not sorted or repeats %q", h, nameb)
		}
		prev = key
	}
	return next, nil
}

package gitsync

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
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

// checkTree validates every entry of a tree that is about to arrive on the host.
func checkTree(t *object.Tree) error {
	for _, e := range t.Entries {
		if err := checkEntryName(e.Name); err != nil {
			return err
		}
		switch e.Mode {
		case filemode.Regular, filemode.Executable, filemode.Dir, filemode.Submodule:
		case filemode.Symlink:
			switch strings.ToLower(e.Name) {
			case ".gitmodules", ".gitattributes", ".gitignore", ".mailmap":
				return hostile("tree entry %q is a symbolic link", e.Name)
			}
		default:
			return hostile("tree entry %q has invalid mode %o", e.Name, uint32(e.Mode))
		}
	}
	return nil
}

package sandboxgit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Mode is the kind of a tree entry.
type Mode uint8

const (
	ModeFile Mode = iota + 1
	ModeExecutable
	ModeSymlink
	ModeDir
	ModeGitlink // a commit of another repository (a submodule): nothing to copy
)

// ParseTree checks a raw tree object and calls fn for each entry, in order. It
// refuses what `git fsck` refuses and what could lead a checkout astray:
// malformed entries, names checkEntryName refuses, unknown modes, a symbolic
// link named .gitmodules, .gitattributes, .gitignore or .mailmap, and entries
// out of git's order or repeated (two entries of one name could check out
// either). name is only valid during the call.
func ParseTree(data []byte, fn func(name []byte, mode Mode, h plumbing.Hash) error) error {
	var prev []byte
	var files [][]byte // sorted, as the tree is: a directory may not repeat one
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			return hostile("tree is malformed")
		}
		modeb := data[:sp]
		data = data[sp+1:]
		nul := bytes.IndexByte(data, 0)
		if nul < 0 || len(data) < nul+1+20 {
			return hostile("tree is malformed")
		}
		name := data[:nul:nul]
		var h plumbing.Hash
		copy(h[:], data[nul+1:nul+21])
		data = data[nul+21:]
		if err := checkEntryNameBytes(name); err != nil {
			return err
		}
		var mode Mode
		key := name
		switch string(modeb) { // compared without allocating
		case "100644", "100664":
			mode = ModeFile
		case "100755":
			mode = ModeExecutable
		case "120000":
			switch strings.ToLower(string(name)) {
			case ".gitmodules", ".gitattributes", ".gitignore", ".mailmap":
				return hostile("tree entry %q is a symbolic link", name)
			}
			mode = ModeSymlink
		case "40000":
			mode = ModeDir
			key = append(name, '/') // name has no spare capacity: this copies
			if _, found := slices.BinarySearchFunc(files, name, bytes.Compare); found {
				return hostile("tree repeats %q", name)
			}
		case "160000":
			mode = ModeGitlink
		default:
			return hostile("tree entry %q has invalid mode %q", name, modeb)
		}
		if mode != ModeDir {
			files = append(files, name)
		}
		if bytes.Compare(key, prev) <= 0 {
			return hostile("tree is not sorted or repeats %q", name)
		}
		prev = key
		if err := fn(name, mode, h); err != nil {
			return err
		}
	}
	return nil
}

// checkEntryNameBytes is CheckEntryName without allocating for ordinary names.
func checkEntryNameBytes(name []byte) error {
	if len(name) == 0 || bytes.IndexByte(name, '/') >= 0 {
		return CheckEntryName(string(name))
	}
	for _, c := range name {
		if c == '.' || c >= 0x80 || c == 'g' || c == 'G' {
			// only names with these can spell a special name: check them fully
			return CheckEntryName(string(name))
		}
	}
	return nil
}

// CheckEntryName refuses tree entry names that would step out of the checkout or
// into a .git directory on any file system git supports (the family of names
// `git fsck` refuses: "", ".", "..", names with "/" or NUL, ".git" in any case,
// and its NTFS and HFS+ spellings).
func CheckEntryName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return hostile("tree entry %q is not a valid file name", name)
	}
	trimmed := strings.TrimRight(strings.Map(dropIgnorable, name), ". ")
	if strings.EqualFold(trimmed, ".git") || strings.EqualFold(trimmed, "git~1") {
		return hostile("tree entry %q names a git directory", name)
	}
	return nil
}

// dropIgnorable removes the code points HFS+ ignores when comparing names, so
// that ".g\u200cit" is caught as ".git".
func dropIgnorable(r rune) rune {
	switch r {
	case 0x200c, 0x200d, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e,
		0x206a, 0x206b, 0x206c, 0x206d, 0x206e, 0x206f, 0xfeff:
		return -1
	}
	return r
}

// TreeError adds the tree's name to a refusal of ParseTree.
func TreeError(h plumbing.Hash, err error) error { return fmt.Errorf("%w (in tree %s)", err, h) }

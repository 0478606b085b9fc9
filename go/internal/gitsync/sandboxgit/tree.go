package sandboxgit

import (
	"bytes"
	"fmt"
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
// malformed entries, names CheckEntryName refuses, unknown modes, a symbolic
// link named .gitmodules, .gitattributes, .gitignore or .mailmap, and entries
// out of git's order or repeated (two entries of one name could check out
// either). name is only valid during the call. It allocates nothing per entry.
func ParseTree(data []byte, fn func(name []byte, mode Mode, h plumbing.Hash) error) error {
	return ParseTreeSince(data, nil, fn)
}

// ParseTreeSince is ParseTree calling fn only for the entries not in old,
// another version of the tree that ParseTree accepted: what a walk that met
// every entry of old still has to meet. Entries also in old have their names
// checked already (a directory of 10,000 files that grows by one per commit
// costs one check and one call per version, not 10,000).
//
// The two versions are read side by side: an entry whose bytes are those of
// old's next entry is that entry (parsing from an entry's start depends only on
// its bytes), so old is parsed only where the versions differ.
func ParseTreeSince(data, old []byte, fn func(name []byte, mode Mode, h plumbing.Hash) error) error {
	var prev []byte
	prevDir := false
	// files holds the file names a later directory could repeat: "a" sorts
	// before "a-b" and "a.c", which sort before the directory "a" ("a/").
	var files [][]byte
	for len(data) > 0 {
		e, rest, ok := nextEntry(data)
		if !ok {
			return hostile("tree is malformed")
		}
		raw := data[:len(data)-len(rest)]
		data = rest
		dir := e.mode == ModeDir
		var inOld, sameHash bool
		if bytes.HasPrefix(old, raw) {
			old, inOld, sameHash = old[len(raw):], true, true
		} else {
			// Skip old's entries that sort before e; take the one of e's name.
			for len(old) > 0 {
				o, oRest, ok := nextEntry(old)
				if !ok {
					break
				}
				c := compareKeys(o.name, o.mode == ModeDir, e.name, dir)
				if c > 0 {
					break
				}
				old = oRest
				if c == 0 {
					// compareKeys assumes names without "/", which e's
					// is not checked for yet: only the same name is old's.
					inOld = o.mode == e.mode && bytes.Equal(o.name, e.name)
					sameHash = inOld && o.hash == e.hash
					break
				}
			}
		}
		if !inOld {
			if err := checkEntryNameBytes(e.name); err != nil {
				return err
			}
		}
		if e.mode == 0 {
			return hostile("tree entry %q has invalid mode %q", e.name, e.modeText)
		}
		if e.mode == ModeSymlink {
			switch strings.ToLower(string(e.name)) {
			case ".gitmodules", ".gitattributes", ".gitignore", ".mailmap":
				return hostile("tree entry %q is a symbolic link", e.name)
			}
		}
		if prev != nil && compareKeys(prev, prevDir, e.name, dir) >= 0 {
			return hostile("tree is not sorted or repeats %q", e.name)
		}
		for len(files) > 0 {
			top := files[len(files)-1]
			if bytes.HasPrefix(e.name, top) && (len(e.name) == len(top) || e.name[len(top)] < '/') {
				break
			}
			files = files[:len(files)-1]
		}
		if dir && len(files) > 0 && bytes.Equal(files[len(files)-1], e.name) {
			return hostile("tree repeats %q", e.name)
		}
		if !dir {
			files = append(files, e.name)
		}
		prev, prevDir = e.name, dir
		if sameHash {
			continue
		}
		if err := fn(e.name, e.mode, e.hash); err != nil {
			return err
		}
	}
	return nil
}

// treeEntry is one entry of a raw tree.
type treeEntry struct {
	name     []byte
	mode     Mode // 0: not a mode git writes
	modeText []byte
	hash     plumbing.Hash
}

// nextEntry splits the first entry off a raw tree.
func nextEntry(data []byte) (treeEntry, []byte, bool) {
	var e treeEntry
	sp := bytes.IndexByte(data, ' ')
	if sp < 0 {
		return e, nil, false
	}
	e.modeText = data[:sp]
	data = data[sp+1:]
	nul := bytes.IndexByte(data, 0)
	if nul < 0 || len(data) < nul+1+20 {
		return e, nil, false
	}
	e.name = data[:nul:nul]
	copy(e.hash[:], data[nul+1:nul+21])
	switch string(e.modeText) { // compared without allocating
	case "100644", "100664":
		e.mode = ModeFile
	case "100755":
		e.mode = ModeExecutable
	case "120000":
		e.mode = ModeSymlink
	case "40000":
		e.mode = ModeDir
	case "160000":
		e.mode = ModeGitlink
	}
	return e, data[nul+21:], true
}

// compareKeys orders tree entries as git does: a directory's name as if it
// ended in "/".
func compareKeys(a []byte, aDir bool, b []byte, bDir bool) int {
	n := min(len(a), len(b))
	if c := bytes.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	next := func(x []byte, dir bool) int {
		switch {
		case len(x) > n:
			return int(x[n])
		case dir:
			return '/'
		}
		return -1 // the key ends here
	}
	// Names hold no "/": past the common part, at most one key goes on
	// with a byte of its name, so comparing the next bytes decides.
	return next(a, aDir) - next(b, bDir)
}

// checkEntryNameBytes is CheckEntryName without allocating for ASCII names.
func checkEntryNameBytes(name []byte) error {
	if len(name) == 0 || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
		return CheckEntryName(string(name))
	}
	for _, c := range name {
		if c >= 0x80 {
			return CheckEntryName(string(name)) // ignorable code points: the full check
		}
	}
	if (len(name) == 1 && name[0] == '.') || (len(name) == 2 && name[0] == '.' && name[1] == '.') {
		return CheckEntryName(string(name))
	}
	trimmed := bytes.TrimRight(name, ". ")
	if asciiEqualFold(trimmed, ".git") || asciiEqualFold(trimmed, "git~1") {
		return CheckEntryName(string(name))
	}
	return nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
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

package sandboxgit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
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
	_, err := parseTree(data, nil, false, fn)
	return err
}

// A TreeVersion is a tree that ParseTreeSince accepted, kept so that a later
// version of the same tree is checked only where the two differ.
type TreeVersion struct {
	data []byte
	// starts holds where each entry starts in data; flag set: no file name
	// but the entry's own was pending after it (treeParser.files), so
	// parsing can resume after it knowing nothing but that entry.
	starts []uint32
}

// pendingNone flags an entry of TreeVersion.starts after which no file name
// but its own was pending. Trees are at most MaxMetaSize bytes: offsets fit
// below it.
const pendingNone = 1 << 31

// ParseTreeSince is ParseTree calling fn only for the entries not in old,
// another version of the tree that ParseTreeSince accepted (nil: none): what a
// walk that met every entry of old still has to meet. It returns data's
// version, for the next one.
//
// Entries also in old have their names checked already, and runs of entries
// that both versions hold byte for byte after the same entry are not parsed
// again (a directory of 10,000 files that gains one per commit costs a few
// entries' checks per version, not 10,000):
//   - The two versions are read side by side: an entry whose bytes are those
//     of old's next entry is that entry (parsing from an entry's start
//     depends only on its bytes), so old is parsed only where they differ.
//   - At the start, and after an entry that was old's next one and left no
//     file name but its own pending, the bytes the two share from there are
//     old's next entries after the same entry; old accepted them with the
//     same previous entry and the same pending names or more, so every check
//     on them passes again. Parsing resumes after the last of them after
//     which old had no file name but that entry's own pending (the one state
//     the order and repeat checks carry besides the previous entry), or ends
//     when the rest of data is old's rest.
func ParseTreeSince(data []byte, old *TreeVersion, fn func(name []byte, mode Mode, h plumbing.Hash) error) (*TreeVersion, error) {
	return parseTree(data, old, true, fn)
}

// resumeAt returns the index after the last of v's entries from index from on
// that end by byte n and after which no file name but the entry's own was
// pending (from when none), or the number of entries when all says that
// nothing is to be parsed after byte n.
func (v *TreeVersion) resumeAt(from, n int, all bool) int {
	if all {
		return len(v.starts)
	}
	// Entry i ends where entry i+1 starts: the entries before the one before
	// the first that starts after n end by n.
	k := sort.Search(len(v.starts), func(i int) bool { return int(v.starts[i]&^pendingNone) > n }) - 1
	for k > from && v.starts[k-1]&pendingNone == 0 {
		k--
	}
	return max(k, from)
}

// entryEnd is where v's entry i ends.
func (v *TreeVersion) entryEnd(i int) int {
	if i+1 < len(v.starts) {
		return int(v.starts[i+1] &^ pendingNone)
	}
	return len(v.data)
}

// treeParser is one parse of ParseTree or ParseTreeSince.
type treeParser struct {
	data []byte
	pos  int // where data's next entry starts
	prev []byte
	// prevDir says prev is a directory.
	prevDir bool
	// files holds the file names a later directory could repeat: "a" sorts
	// before "a-b" and "a.c", which sort before the directory "a" ("a/").
	files [][]byte

	old  *TreeVersion
	rest []byte // old from the entry data's next one is compared with
	oi   int    // that entry's index in old
	// recheckFrom is where data's rest can next share more with old's rest
	// than the last comparison found.
	recheckFrom int

	v *TreeVersion // nil unless the version is kept
}

// parseTree is ParseTree and ParseTreeSince; keep builds the version.
func parseTree(data []byte, old *TreeVersion, keep bool, fn func(name []byte, mode Mode, h plumbing.Hash) error) (*TreeVersion, error) {
	if len(data) > MaxMetaSize {
		return nil, &LimitError{What: "a tree", Size: int64(len(data)), Limit: MaxMetaSize}
	}
	p := &treeParser{data: data, old: old}
	if keep {
		p.v = &TreeVersion{data: data}
		if old != nil {
			p.v.starts = make([]uint32, 0, len(old.starts)+8)
		}
	}
	if old != nil {
		p.rest = old.data
		p.skipShared()
	}
	for p.pos < len(data) {
		if err := p.next(fn); err != nil {
			return nil, err
		}
	}
	return p.v, nil
}

// next parses and checks data's next entry.
func (p *treeParser) next(fn func(name []byte, mode Mode, h plumbing.Hash) error) error {
	e, after, ok := nextEntry(p.data[p.pos:])
	if !ok {
		return hostile("tree is malformed")
	}
	size := len(p.data) - p.pos - len(after)
	raw := p.data[p.pos : p.pos+size]
	dir := e.mode == ModeDir
	var inOld, sameHash, aligned bool
	if bytes.HasPrefix(p.rest, raw) {
		p.rest, p.oi, inOld, sameHash, aligned = p.rest[size:], p.oi+1, true, true, true
	} else {
		// Skip old's entries that sort before e; take the one of e's name.
		for len(p.rest) > 0 {
			o, oRest, ok := nextEntry(p.rest)
			if !ok {
				break
			}
			c := compareKeys(o.name, o.mode == ModeDir, e.name, dir)
			if c > 0 {
				break
			}
			p.rest, p.oi = oRest, p.oi+1
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
	if p.prev != nil && compareKeys(p.prev, p.prevDir, e.name, dir) >= 0 {
		return hostile("tree is not sorted or repeats %q", e.name)
	}
	for len(p.files) > 0 {
		top := p.files[len(p.files)-1]
		if bytes.HasPrefix(e.name, top) && (len(e.name) == len(top) || e.name[len(top)] < '/') {
			break
		}
		p.files = p.files[:len(p.files)-1]
	}
	if dir && len(p.files) > 0 && bytes.Equal(p.files[len(p.files)-1], e.name) {
		return hostile("tree repeats %q", e.name)
	}
	if !dir {
		p.files = append(p.files, e.name)
	}
	ownOnly := len(p.files) == 0 || len(p.files) == 1 && !dir // e was pushed last
	if p.v != nil {
		s := uint32(p.pos)
		if ownOnly {
			s |= pendingNone
		}
		p.v.starts = append(p.v.starts, s)
	}
	p.prev, p.prevDir = e.name, dir
	p.pos += size
	if !sameHash {
		if err := fn(e.name, e.mode, e.hash); err != nil {
			return err
		}
	}
	if aligned && ownOnly {
		p.skipShared()
	}
	return nil
}

// skipShared moves past the entries data shares with old from here, where the
// parse is at old's next entry after the same entry (or at both starts) with
// no file name pending but that entry's own (see ParseTreeSince).
func (p *treeParser) skipShared() {
	if p.pos < p.recheckFrom {
		return
	}
	oldPos := len(p.old.data) - len(p.rest)
	same := commonPrefix(p.data[p.pos:], p.rest)
	p.recheckFrom = p.pos + same + 1
	k := p.old.resumeAt(p.oi, oldPos+same, same == len(p.data)-p.pos && same == len(p.rest))
	if k == p.oi {
		return
	}
	if p.v != nil { // old's entries, where they are in data
		shift := uint32(p.pos - oldPos) // wraps when negative; the sum does not
		for _, s := range p.old.starts[p.oi:k] {
			p.v.starts = append(p.v.starts, s+shift)
		}
	}
	last := int(p.old.starts[k-1]&^pendingNone) - oldPos + p.pos
	e, _, _ := nextEntry(p.data[last:])
	p.prev, p.prevDir = e.name, e.mode == ModeDir
	p.files = p.files[:0]
	if !p.prevDir {
		p.files = append(p.files, e.name)
	}
	end := p.old.entryEnd(k - 1)
	p.pos += end - oldPos
	p.rest, p.oi = p.old.data[end:], k
}

// commonPrefix is the length of the bytes a and b share from their start.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+256 <= n && bytes.Equal(a[i:i+256], b[i:i+256]); i += 256 { // the vectorised compare
	}
	for ; i+8 <= n; i += 8 {
		if binary.LittleEndian.Uint64(a[i:]) != binary.LittleEndian.Uint64(b[i:]) {
			break
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
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

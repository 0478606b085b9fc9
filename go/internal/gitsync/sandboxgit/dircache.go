package sandboxgit

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// IndexEntry is one entry of the workspace's .git/index (the "dircache"):
// what `git add` recorded of a file.
type IndexEntry struct {
	Path         string
	Mode         uint32
	Hash         plumbing.Hash
	Size         uint32 // truncated to 32 bits, as git stores it
	MtimeSec     uint32
	MtimeNsec    uint32
	Stage        int  // 0, or 1-3 for a conflict
	SkipWorktree bool // sparse checkout: not in the working tree
	IntentToAdd  bool // `git add -N`
}

// DirCache is a parsed .git/index: its entries, and the tree its cache-tree
// extension records for the whole index (zero when absent or invalidated).
type DirCache struct {
	Entries  []IndexEntry
	RootTree plumbing.Hash
}

// ParseDirCache parses an index file of version 2, 3 or 4. The entry count is
// checked against the size before anything is allocated, every path against
// the data left; extensions other than the root of the cache-tree are skipped,
// and the checksum is not checked (nothing here is trusted anyway).
func ParseDirCache(data []byte) (*DirCache, error) {
	if len(data) < 12 || !bytes.Equal(data[:4], []byte("DIRC")) {
		return nil, hostile("index is not a git index")
	}
	version := binary.BigEndian.Uint32(data[4:])
	if version < 2 || version > 4 {
		return nil, hostile("index version %d is not one git writes", version)
	}
	n := int(binary.BigEndian.Uint32(data[8:]))
	if n > (len(data)-12)/42 { // the smallest entry: 40 bytes of stat data and mode, a name, two NULs
		return nil, hostile("index claims %d entries, more than it holds", n)
	}
	dc := &DirCache{Entries: make([]IndexEntry, 0, n)}
	rest := data[12:]
	var prev []byte
	for i := 0; i < n; i++ {
		e, path, r, err := parseIndexEntry(rest, version, prev)
		if err != nil {
			return nil, err
		}
		rest, prev = r, path
		dc.Entries = append(dc.Entries, e)
	}
	dc.RootTree = rootCacheTree(rest)
	return dc, nil
}

func parseIndexEntry(b []byte, version uint32, prev []byte) (IndexEntry, []byte, []byte, error) {
	var e IndexEntry
	const fixed = 62 // ctime, mtime, dev, ino, mode, uid, gid, size (40), name (20), flags (2)
	if len(b) < fixed {
		return e, nil, nil, hostile("index ends inside an entry")
	}
	e.MtimeSec, e.MtimeNsec = binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	e.Mode = binary.BigEndian.Uint32(b[24:])
	e.Size = binary.BigEndian.Uint32(b[36:])
	copy(e.Hash[:], b[40:60])
	flags := binary.BigEndian.Uint16(b[60:])
	e.Stage = int(flags>>12) & 3
	at := fixed
	if flags&0x4000 != 0 { // extended flags (git reads them in any version)
		if len(b) < fixed+2 {
			return e, nil, nil, hostile("index has a malformed entry")
		}
		ext := binary.BigEndian.Uint16(b[fixed:])
		e.SkipWorktree, e.IntentToAdd = ext&0x4000 != 0, ext&0x2000 != 0
		at += 2
	}
	var path []byte
	if version == 4 { // the name is the previous one, less N bytes, plus a suffix
		strip, n := binary.Uvarint(b[at:])
		if n <= 0 || strip > uint64(len(prev)) {
			return e, nil, nil, hostile("index has a malformed entry name")
		}
		at += n
		nul := bytes.IndexByte(b[at:], 0)
		if nul < 0 {
			return e, nil, nil, hostile("index ends inside an entry name")
		}
		path = append(append([]byte(nil), prev[:len(prev)-int(strip)]...), b[at:at+nul]...)
		at += nul + 1
	} else { // NUL-terminated, the entry padded with NULs to a multiple of 8
		nul := bytes.IndexByte(b[at:], 0)
		if nul < 0 {
			return e, nil, nil, hostile("index ends inside an entry name")
		}
		path = b[at : at+nul]
		at = (at + nul + 8) &^ 7
		if at > len(b) {
			return e, nil, nil, hostile("index ends inside an entry")
		}
	}
	if len(path) == 0 {
		return e, nil, nil, hostile("index has an entry without a name")
	}
	e.Path = string(path)
	return e, path, b[at:], nil
}

// rootCacheTree reads the whole index's tree from the "TREE" extension: a
// record of path "", entry count, subtree count, then the tree's name unless
// the count is -1 (invalidated).
func rootCacheTree(ext []byte) plumbing.Hash {
	for len(ext) >= 8+20 {
		sig, size := string(ext[:4]), binary.BigEndian.Uint32(ext[4:])
		if uint64(size) > uint64(len(ext)-8) {
			break
		}
		body := ext[8 : 8+size]
		ext = ext[8+size:]
		if sig != "TREE" {
			continue
		}
		path, rest, ok := bytes.Cut(body, []byte{0})
		line, rest2, ok2 := bytes.Cut(rest, []byte{'\n'})
		count, _, _ := bytes.Cut(line, []byte{' '})
		c, err := strconv.Atoi(string(count))
		if !ok || !ok2 || len(path) != 0 || err != nil || c < 0 || len(rest2) < 20 {
			break
		}
		var h plumbing.Hash
		copy(h[:], rest2[:20])
		return h
	}
	return plumbing.ZeroHash
}

// ReadDirCache reads and parses .git/index; a repository without one has an
// empty index.
func (r *Repo) ReadDirCache(limit int64) (*DirCache, error) {
	data, err := r.readSmall("index", limit)
	if err != nil {
		if isNotExist(err) {
			return &DirCache{}, nil
		}
		return nil, err
	}
	return ParseDirCache(data)
}

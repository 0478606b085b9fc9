package packwrite

import "github.com/go-git/go-git/v5/plumbing"

// Entry is an object held in memory, to be written as it is or as a delta.
type Entry struct {
	Type plumbing.ObjectType
	data []byte // the content: a base for the next version of its path
	body []byte // what the entry stores: data, or a delta
	base *Entry // an OFS_DELTA's base, written before it
	off  int64  // set once written
	z    []byte // body compressed
}

// Full is an entry storing data as it is.
func Full(typ plumbing.ObjectType, data []byte) *Entry {
	return &Entry{Type: typ, data: data, body: data}
}

// Deltas makes entries as deltas against the previous version of the same path
// (trees and files, which a history of many commits rewrites a little at a
// time): git's fetch stores them the same way, and it keeps packs and their
// compression small.
type Deltas struct {
	last map[string]*Entry
}

// DeltaMax is the largest object kept as a base for the next version.
const DeltaMax = 256 << 10

// Entry is the entry for data at path ("" when unknown): a delta against the
// last version of path when that saves at least half, else data in full.
func (d *Deltas) Entry(typ plumbing.ObjectType, data []byte, path string) *Entry {
	e := Full(typ, data)
	if path == "" || len(data) > DeltaMax {
		return e
	}
	if d.last == nil {
		d.last = map[string]*Entry{}
	}
	if b, ok := d.last[path]; ok && b.Type == typ {
		if delta := MakeDelta(b.data, data); delta != nil {
			e.body, e.base = delta, b
		}
	}
	d.last[path] = e
	return e
}

// MakeDelta returns a git delta that turns base into target, or nil when it
// would not save at least half. It is the simplest form git's format allows:
// copy the common prefix and suffix, insert the middle. An empty target gets
// none: its delta would be the two sizes alone, shorter than the 4 bytes git's
// patch_delta accepts (DELTA_SIZE_MIN), and git would call the object corrupt.
func MakeDelta(base, target []byte) []byte {
	if len(target) == 0 {
		return nil
	}
	p := 0
	for p < len(base) && p < len(target) && base[p] == target[p] {
		p++
	}
	s := 0
	for s < len(base)-p && s < len(target)-p && base[len(base)-1-s] == target[len(target)-1-s] {
		s++
	}
	mid := target[p : len(target)-s]
	if len(mid)*2 > len(target) {
		return nil
	}
	d := appendVarint(nil, len(base))
	d = appendVarint(d, len(target))
	d = appendCopy(d, 0, p)
	for len(mid) > 0 {
		n := min(len(mid), 0x7f)
		d = append(d, byte(n))
		d = append(d, mid[:n]...)
		mid = mid[n:]
	}
	return appendCopy(d, len(base)-s, s)
}

func appendVarint(d []byte, n int) []byte {
	for n >= 0x80 {
		d = append(d, byte(n)|0x80)
		n >>= 7
	}
	return append(d, byte(n))
}

// appendCopy appends copy instructions for base[off:off+n], in chunks of 64 KiB.
func appendCopy(d []byte, off, n int) []byte {
	for n > 0 {
		size := min(n, 0x10000)
		op := byte(0x80)
		var args []byte
		for i := 0; i < 4; i++ {
			if b := byte(off >> (8 * i)); b != 0 {
				op |= 1 << i
				args = append(args, b)
			}
		}
		if size != 0x10000 { // a size of 0 means 0x10000
			for i := 0; i < 3; i++ {
				if b := byte(size >> (8 * i)); b != 0 {
					op |= 0x10 << i
					args = append(args, b)
				}
			}
		}
		d = append(append(d, op), args...)
		off, n = off+size, n-size
	}
	return d
}

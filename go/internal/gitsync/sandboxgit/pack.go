package sandboxgit

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Pack is one pack file and its index.
type Pack struct {
	name string // pack-<hash>, for messages
	f    *os.File
	size int64
	idx  *Index
	once sync.Once
	ends []int64 // entry offsets in pack order, for entryEnd (built on first use)
	at   []int32 // index entry of each of ends
}

func (p *Pack) close() { p.f.Close() }

// entry is the header of a pack entry.
type entry struct {
	off  int64
	kind plumbing.ObjectType // an object type, or OFSDeltaObject / REFDeltaObject
	size int64               // of the object, or of the delta
	data int64               // where the zlib stream starts
	base int64               // OFS_DELTA: the base entry's offset
	ref  plumbing.Hash       // REF_DELTA: the base's name
}

// header parses the entry at off: type and size (a varint whose first byte holds
// the type), then the base of a delta (an offset back, or a name).
func (p *Pack) header(off int64) (entry, error) {
	var buf [32]byte
	n, err := p.f.ReadAt(buf[:], off) // fewer bytes near the end: parsing checks
	e := entry{off: off}
	if n == 0 {
		return e, hostile("cannot read %s at %d: %v", p.name, off, err)
	}
	b := buf[:n]
	c := b[0]
	e.kind = plumbing.ObjectType((c >> 4) & 7)
	e.size = int64(c & 0x0f)
	i := 1
	for shift := 4; c&0x80 != 0; shift += 7 {
		if i >= len(b) || shift > 60 {
			return e, hostile("%s has a malformed entry at %d", p.name, off)
		}
		c = b[i]
		i++
		e.size |= int64(c&0x7f) << shift
	}
	if e.size < 0 {
		return e, hostile("%s has a malformed entry at %d", p.name, off)
	}
	switch e.kind {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	case plumbing.OFSDeltaObject:
		if i >= len(b) {
			return e, hostile("%s has a malformed entry at %d", p.name, off)
		}
		c = b[i]
		i++
		back := int64(c & 0x7f)
		for c&0x80 != 0 {
			if i >= len(b) || back > 1<<55 {
				return e, hostile("%s has a malformed delta at %d", p.name, off)
			}
			c = b[i]
			i++
			back = (back+1)<<7 | int64(c&0x7f)
		}
		if back <= 0 || back > off-12 {
			return e, hostile("%s has a delta at %d whose base lies outside the pack", p.name, off)
		}
		e.base = off - back
	case plumbing.REFDeltaObject:
		if i+20 > len(b) {
			return e, hostile("%s has a malformed entry at %d", p.name, off)
		}
		copy(e.ref[:], b[i:i+20])
		i += 20
	default:
		return e, hostile("%s has an entry of unknown type %d at %d", p.name, e.kind, off)
	}
	e.data = off + int64(i)
	return e, nil
}

// inflate returns a reader of the entry's zlib stream that yields exactly
// e.size bytes and then checks that the stream ends there, with a valid checksum.
// The stream is read up to where the next entry starts: reads of a small entry
// stay small (most commits and trees compress to a few hundred bytes), and a
// stream that runs into the next entry is refused as corrupt.
func (p *Pack) inflate(e entry) (io.ReadCloser, error) {
	end := p.entryEnd(e.off)
	if end <= e.data {
		return nil, hostile("%s has a truncated entry at %d", p.name, e.off)
	}
	z, err := newInflater(io.NewSectionReader(p.f, e.data, end-e.data))
	if err != nil {
		return nil, hostile("%s has a corrupt entry at %d: %v", p.name, e.off, err)
	}
	return exactReader(z, e.size, fmt.Sprintf("the entry at %d of %s", e.off, p.name)), nil
}

// readEntry inflates a whole entry (an object or a delta) of at most limit bytes.
func (p *Pack) readEntry(e entry, limit int64) ([]byte, error) {
	if e.size > limit {
		return nil, tooLarge(fmt.Sprintf("the entry at %d of %s", e.off, p.name), e.size, limit)
	}
	r, err := p.inflate(e)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(r, e.size)
}

// deltaTarget reads the target size a delta entry declares, inflating only the
// start of the delta.
func (p *Pack) deltaTarget(e entry) (int64, error) {
	r, err := p.inflate(e)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var buf [20]byte // two varints of at most 9 bytes each
	got, err := io.ReadFull(r, buf[:min(int64(len(buf)), e.size)])
	if err != nil {
		return 0, err
	}
	_, i, err := varint(buf[:got], 0)
	if err != nil {
		return 0, err
	}
	target, _, err := varint(buf[:got], i)
	return target, err
}

// entryEnd is where the entry at off ends: where the next one starts, or the
// pack's trailer.
func (p *Pack) entryEnd(off int64) int64 {
	p.once.Do(func() {
		p.ends = make([]int64, p.idx.n)
		p.at = make([]int32, p.idx.n)
		order := make([]int32, p.idx.n)
		for i := range order {
			order[i] = int32(i)
		}
		sort.Slice(order, func(a, b int) bool { return p.idx.Offset(int(order[a])) < p.idx.Offset(int(order[b])) })
		for k, i := range order {
			p.ends[k], p.at[k] = p.idx.Offset(int(i)), i
		}
	})
	k := sort.Search(len(p.ends), func(k int) bool { return p.ends[k] > off })
	if k == len(p.ends) {
		return p.size - 20
	}
	return p.ends[k]
}

// hashAt is the name of the entry that starts at off, for an OFS_DELTA's base.
func (p *Pack) hashAt(off int64) (plumbing.Hash, bool) {
	p.entryEnd(off) // builds the order
	k := sort.Search(len(p.ends), func(k int) bool { return p.ends[k] >= off })
	if k == len(p.ends) || p.ends[k] != off {
		return plumbing.ZeroHash, false
	}
	return p.idx.Hash(int(p.at[k])), true
}

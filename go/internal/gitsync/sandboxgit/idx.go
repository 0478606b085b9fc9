package sandboxgit

import (
	"bytes"
	"encoding/binary"

	"github.com/go-git/go-git/v5/plumbing"
)

// A version 2 pack index: magic and version (8 bytes), a fan-out table of 256
// cumulative counts by first byte, then for N objects their sorted names (20 bytes
// each), CRC32s (4), offsets (4; with the high bit set, an index into a table of
// 8-byte offsets that follows), and two checksums (40).
const (
	idxHeader   = 8
	idxFanout   = 256 * 4
	idxTrailer  = 40
	idxPerEntry = 20 + 4 + 4
)

var idxMagic = []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}

// Index is a parsed pack index, checked whole when parsed: its size matches its
// object count, the fan-out agrees with the names, the names are sorted, and
// every offset lies inside the pack. Lookups then cannot fail or read outside it.
type Index struct {
	data  []byte
	n     int
	names []byte // n × 20
	offs  []byte // n × 4
	large []byte // k × 8
}

// ParseIndex checks data as the index of a pack of packSize bytes.
func ParseIndex(data []byte, packSize int64) (*Index, error) {
	if len(data) < idxHeader+idxFanout+idxTrailer || !bytes.Equal(data[:idxHeader], idxMagic) {
		return nil, hostile("pack index is not a version 2 index")
	}
	fan := data[idxHeader : idxHeader+idxFanout]
	n := int(binary.BigEndian.Uint32(fan[255*4:]))
	rest := len(data) - idxHeader - idxFanout - idxTrailer
	if n > rest/idxPerEntry {
		return nil, hostile("pack index claims %d objects, more than it holds", n)
	}
	largeBytes := rest - n*idxPerEntry
	if largeBytes%8 != 0 {
		return nil, hostile("pack index has a malformed size")
	}
	x := &Index{data: data, n: n}
	at := idxHeader + idxFanout
	x.names = data[at : at+n*20]
	at += n * 24 // names, then CRCs
	x.offs = data[at : at+n*4]
	x.large = data[at+n*4 : at+n*4+largeBytes]
	if err := x.checkNames(fan); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		off, ok := x.offset(i)
		if !ok || off < 12 || off >= packSize-20 {
			return nil, hostile("pack index names offset %d, outside its pack", off)
		}
	}
	return x, nil
}

// checkNames checks that the names are strictly increasing and that the fan-out
// table counts them.
func (x *Index) checkNames(fan []byte) error {
	i := 0
	for b := 0; b < 256; b++ {
		end := int(binary.BigEndian.Uint32(fan[b*4:]))
		if end < i || end > x.n {
			return hostile("pack index has a malformed fan-out table")
		}
		for ; i < end; i++ {
			name := x.names[i*20 : i*20+20]
			if int(name[0]) != b || (i > 0 && bytes.Compare(x.names[(i-1)*20:i*20], name) >= 0) {
				return hostile("pack index is not sorted")
			}
		}
	}
	return nil
}

// offset is the pack offset of entry i; ok is false for an index into the
// large-offset table that is out of range or an offset that does not fit int64.
func (x *Index) offset(i int) (int64, bool) {
	v := binary.BigEndian.Uint32(x.offs[i*4:])
	if v&0x80000000 == 0 {
		return int64(v), true
	}
	j := int(v & 0x7fffffff)
	if j >= len(x.large)/8 {
		return 0, false
	}
	big := binary.BigEndian.Uint64(x.large[j*8:])
	return int64(big), big < 1<<62
}

// Count is the number of objects in the index.
func (x *Index) Count() int { return x.n }

// Hash is the name of entry i.
func (x *Index) Hash(i int) plumbing.Hash {
	var h plumbing.Hash
	copy(h[:], x.names[i*20:])
	return h
}

// Offset is the pack offset of entry i (checked by ParseIndex).
func (x *Index) Offset(i int) int64 {
	off, _ := x.offset(i)
	return off
}

// Find returns the entry of h, or -1.
func (x *Index) Find(h plumbing.Hash) int {
	fan := x.data[idxHeader:]
	lo := 0
	if h[0] > 0 {
		lo = int(binary.BigEndian.Uint32(fan[(int(h[0])-1)*4:]))
	}
	hi := int(binary.BigEndian.Uint32(fan[int(h[0])*4:]))
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(x.names[mid*20:mid*20+20], h[:]); {
		case c == 0:
			return mid
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return -1
}

// Contains reports whether the index names h.
func (x *Index) Contains(h plumbing.Hash) bool { return x.Find(h) >= 0 }

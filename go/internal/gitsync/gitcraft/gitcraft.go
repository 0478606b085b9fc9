// Package gitcraft writes git objects and packs by hand, bypassing every
// check git makes: what a hostile sandbox can leave in its workspace's .git,
// for the tests of everything that reads it (gitsync, syncwatch).
package gitcraft

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// PackEntry is one entry of a hand-made pack: Body is what the entry's zlib
// stream holds (an object, or a delta against entries[Base] when Base >= 0).
type PackEntry struct {
	Name plumbing.Hash
	Kind plumbing.ObjectType
	Body []byte
	Base int
}

// Pack writes entries as objects/pack/pack-<sum>.{pack,idx} of gitDir,
// bypassing every check git makes. bigOffset, when set, replaces the first
// index entry's offset with an 8-byte one.
func Pack(t testing.TB, gitDir string, entries []PackEntry, bigOffset uint64) {
	t.Helper()
	var pack bytes.Buffer
	pack.WriteString("PACK")
	binary.Write(&pack, binary.BigEndian, uint32(2))
	binary.Write(&pack, binary.BigEndian, uint32(len(entries)))
	offs := make([]int, len(entries))
	for i, e := range entries {
		offs[i] = pack.Len()
		size := len(e.Body)
		c := byte(e.Kind)<<4 | byte(size&0x0f)
		for s := size >> 4; s > 0; s >>= 7 {
			pack.WriteByte(c | 0x80)
			c = byte(s & 0x7f)
		}
		pack.WriteByte(c)
		if e.Kind == plumbing.OFSDeltaObject {
			dist := offs[i] - offs[e.Base]
			var b []byte
			b = append(b, byte(dist&0x7f))
			for dist >>= 7; dist > 0; dist >>= 7 {
				dist--
				b = append([]byte{0x80 | byte(dist&0x7f)}, b...)
			}
			pack.Write(b)
		}
		zw := zlib.NewWriter(&pack)
		zw.Write(e.Body)
		zw.Close()
	}
	sum := sha1.Sum(pack.Bytes())
	pack.Write(sum[:])

	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bytes.Compare(entries[order[a]].Name[:], entries[order[b]].Name[:]) < 0 })
	var idx bytes.Buffer
	idx.Write([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 2})
	for b := 0; b < 256; b++ {
		n := 0
		for _, i := range order {
			if int(entries[i].Name[0]) <= b {
				n++
			}
		}
		binary.Write(&idx, binary.BigEndian, uint32(n))
	}
	for _, i := range order {
		idx.Write(entries[i].Name[:])
	}
	idx.Write(make([]byte, 4*len(entries))) // CRCs
	for k, i := range order {
		off := uint32(offs[i])
		if k == 0 && bigOffset != 0 {
			off = 0x80000000
		}
		binary.Write(&idx, binary.BigEndian, off)
	}
	if bigOffset != 0 {
		binary.Write(&idx, binary.BigEndian, bigOffset)
	}
	idx.Write(sum[:])
	isum := sha1.Sum(idx.Bytes())
	idx.Write(isum[:])
	base := filepath.Join(gitDir, "objects", "pack", fmt.Sprintf("pack-%x", sum))
	writeFile(t, base+".pack", pack.Bytes())
	writeFile(t, base+".idx", idx.Bytes())
}

// LooseBomb is a loose object file whose header claims size bytes of type typ
// but which holds only a few KB.
func LooseBomb(t testing.TB, gitDir string, typ string, size int64) plumbing.Hash {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	fmt.Fprintf(zw, "%s %d\x00", typ, size)
	zw.Write(make([]byte, 4<<10))
	zw.Close()
	h := plumbing.ComputeHash(plumbing.BlobObject, []byte(fmt.Sprint("bomb ", typ, size)))
	p := filepath.Join(gitDir, "objects", h.String()[:2], h.String()[2:])
	writeFile(t, p, buf.Bytes())
	return h
}

// CopyBomb is a delta of n copy instructions, each of the whole 64 KiB base:
// a few dozen bytes compressed that claim n × 64 KiB.
func CopyBomb(n int) []byte {
	d := []byte{0x80, 0x80, 0x04} // base size 65536
	for v := n * 0x10000; ; v >>= 7 {
		if v < 0x80 {
			d = append(d, byte(v))
			break
		}
		d = append(d, byte(v)|0x80)
	}
	return append(d, bytes.Repeat([]byte{0x80}, n)...) // copy offset 0, size 0x10000
}

// InsertDelta is a delta that turns base into target by inserting all of it.
func InsertDelta(base, target []byte) []byte {
	var d []byte
	for _, n := range []int{len(base), len(target)} {
		for ; n >= 0x80; n >>= 7 {
			d = append(d, byte(n)|0x80)
		}
		d = append(d, byte(n))
	}
	for rest := target; len(rest) > 0; {
		n := min(len(rest), 0x7f)
		d = append(append(d, byte(n)), rest[:n]...)
		rest = rest[n:]
	}
	return d
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// Whole is a pack entry holding the object body of type kind, named name.
func Whole(name plumbing.Hash, kind plumbing.ObjectType, body []byte) PackEntry {
	return PackEntry{Name: name, Kind: kind, Body: body, Base: -1}
}

// OfsDelta is a pack entry holding delta against the entry at index base, named name.
func OfsDelta(name plumbing.Hash, delta []byte, base int) PackEntry {
	return PackEntry{Name: name, Kind: plumbing.OFSDeltaObject, Body: delta, Base: base}
}

// CopyBombPack writes a pack of a 64 KiB blob and a delta against it of n
// copies of the whole blob (a few hundred bytes on disk that claim n × 64
// KiB), and returns the names of the blob and of the delta's object.
func CopyBombPack(t testing.TB, gitDir string, n int) (base, bomb plumbing.Hash) {
	t.Helper()
	body := bytes.Repeat([]byte("x"), 0x10000)
	base = plumbing.ComputeHash(plumbing.BlobObject, body)
	bomb = plumbing.ComputeHash(plumbing.BlobObject, []byte("the delta's claimed name"))
	Pack(t, gitDir, []PackEntry{Whole(base, plumbing.BlobObject, body), OfsDelta(bomb, CopyBomb(n), 0)}, 0)
	return base, bomb
}

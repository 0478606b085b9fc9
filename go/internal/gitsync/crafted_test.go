package gitsync

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// packEntry is one entry of a hand-made pack: body is what the entry's zlib
// stream holds (an object, or a delta against entries[base] when base >= 0).
type packEntry struct {
	name plumbing.Hash
	kind plumbing.ObjectType
	body []byte
	base int
}

// craftPack writes entries as objects/pack/pack-<sum>.{pack,idx} of gitDir,
// bypassing every check git makes. bigOffset, when set, replaces the first
// index entry's offset with an 8-byte one.
func craftPack(t *testing.T, gitDir string, entries []packEntry, bigOffset uint64) {
	t.Helper()
	var pack bytes.Buffer
	pack.WriteString("PACK")
	binary.Write(&pack, binary.BigEndian, uint32(2))
	binary.Write(&pack, binary.BigEndian, uint32(len(entries)))
	offs := make([]int, len(entries))
	for i, e := range entries {
		offs[i] = pack.Len()
		size := len(e.body)
		c := byte(e.kind)<<4 | byte(size&0x0f)
		for s := size >> 4; s > 0; s >>= 7 {
			pack.WriteByte(c | 0x80)
			c = byte(s & 0x7f)
		}
		pack.WriteByte(c)
		if e.kind == plumbing.OFSDeltaObject {
			dist := offs[i] - offs[e.base]
			var b []byte
			b = append(b, byte(dist&0x7f))
			for dist >>= 7; dist > 0; dist >>= 7 {
				dist--
				b = append([]byte{0x80 | byte(dist&0x7f)}, b...)
			}
			pack.Write(b)
		}
		zw := zlib.NewWriter(&pack)
		zw.Write(e.body)
		zw.Close()
	}
	sum := sha1.Sum(pack.Bytes())
	pack.Write(sum[:])

	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bytes.Compare(entries[order[a]].name[:], entries[order[b]].name[:]) < 0 })
	var idx bytes.Buffer
	idx.Write([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 2})
	for b := 0; b < 256; b++ {
		n := 0
		for _, i := range order {
			if int(entries[i].name[0]) <= b {
				n++
			}
		}
		binary.Write(&idx, binary.BigEndian, uint32(n))
	}
	for _, i := range order {
		idx.Write(entries[i].name[:])
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
	os.MkdirAll(filepath.Dir(base), 0o755)
	write(t, base+".pack", pack.String())
	write(t, base+".idx", idx.String())
}

// looseBomb is a loose object file whose header claims size bytes of type typ
// but which holds only a few KB.
func looseBomb(t *testing.T, gitDir string, typ string, size int64) plumbing.Hash {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	fmt.Fprintf(zw, "%s %d\x00", typ, size)
	zw.Write(make([]byte, 4<<10))
	zw.Close()
	h := plumbing.ComputeHash(plumbing.BlobObject, []byte(fmt.Sprint("bomb ", typ, size)))
	p := filepath.Join(gitDir, "objects", h.String()[:2], h.String()[2:])
	os.MkdirAll(filepath.Dir(p), 0o755)
	write(t, p, buf.String())
	return h
}

// copyBomb is a delta of n copy instructions, each of the whole 64 KiB base:
// a few dozen bytes compressed that claim n × 64 KiB.
func copyBomb(n int) []byte {
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

// insertDelta is a delta that turns base into target by inserting all of it.
func insertDelta(base, target []byte) []byte {
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

// TestSyncBoundsCraftedObjects: objects whose headers or deltas claim far more
// than they hold are refused before anything that size is allocated (issue 14
// item 5); the host is unchanged and the process stays small.
func TestSyncBoundsCraftedObjects(t *testing.T) {
	base := bytes.Repeat([]byte("x"), 0x10000)
	baseName := plumbing.ComputeHash(plumbing.BlobObject, base)
	fake := plumbing.ComputeHash(plumbing.BlobObject, []byte("the delta's claimed name"))
	for _, tc := range []struct {
		name  string
		craft func(t *testing.T, g string) []entry
	}{
		{"loose blob claiming 4 GiB", func(t *testing.T, g string) []entry {
			return []entry{{"100644", "bomb", looseBomb(t, g, "blob", 4<<30)}}
		}},
		{"loose blob claiming 900 MiB", func(t *testing.T, g string) []entry {
			return []entry{{"100644", "bomb", looseBomb(t, g, "blob", 900<<20)}}
		}},
		{"loose tree claiming 60 MiB", func(t *testing.T, g string) []entry {
			return []entry{{"40000", "bomb", looseBomb(t, g, "tree", 60<<20)}}
		}},
		{"delta of 20000 copies whose base travels", func(t *testing.T, g string) []entry {
			craftPack(t, g, []packEntry{{baseName, plumbing.BlobObject, base, -1},
				{fake, plumbing.OFSDeltaObject, copyBomb(20000), 0}}, 0)
			return []entry{{"100644", "base", baseName}, {"100644", "bomb", fake}}
		}},
		{"delta of 20000 copies whose base stays", func(t *testing.T, g string) []entry {
			craftPack(t, g, []packEntry{{baseName, plumbing.BlobObject, base, -1},
				{fake, plumbing.OFSDeltaObject, copyBomb(20000), 0}}, 0)
			return []entry{{"100644", "bomb", fake}}
		}},
		{"file entry naming a tree stored as a delta", func(t *testing.T, g string) []entry {
			b := writeLoose(t, g, plumbing.BlobObject, []byte("b\n"), plumbing.ZeroHash)
			t0 := rawTree(entry{"100644", "a", b})
			x := rawTree(entry{"100644", "a", b}, entry{"100644", "b", b})
			craftPack(t, g, []packEntry{{plumbing.ComputeHash(plumbing.TreeObject, t0), plumbing.TreeObject, t0, -1},
				{plumbing.ComputeHash(plumbing.TreeObject, x), plumbing.OFSDeltaObject, insertDelta(t0, x), 0}}, 0)
			return []entry{{"100644", "bomb", plumbing.ComputeHash(plumbing.TreeObject, x)}, {"40000", "d", plumbing.ComputeHash(plumbing.TreeObject, t0)}}
		}},
		{"index with an out-of-range 64-bit offset", func(t *testing.T, g string) []entry {
			craftPack(t, g, []packEntry{{baseName, plumbing.BlobObject, base, -1}}, 1<<40)
			return []entry{{"100644", "base", baseName}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, ws := newPair(t)
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(tc.craft(t, g)...), plumbing.ZeroHash))
			before := snapshot(t, host)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			for _, dry := range []bool{true, false} {
				o := opts(host, ws)
				o.DryRun = dry
				_, err := Sync(context.Background(), o)
				if !errors.Is(err, ErrHostile) {
					t.Fatalf("sync (dry run %v): %v, want ErrHostile", dry, err)
				}
				t.Logf("refused: %v", err)
			}
			if _, err := Pending(context.Background(), opts(host, ws)); err != nil {
				t.Logf("pending: %v", err)
			}
			runtime.ReadMemStats(&m1)
			if got := m1.TotalAlloc - m0.TotalAlloc; got > 400<<20 {
				t.Errorf("allocated %d MiB to refuse it", got>>20)
			}
			if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
				t.Errorf("host changed after a refused sync: %v", d)
			}
		})
	}
}

var _ = sandboxgit.MaxBlobSize

// nested makes a chain of depth trees, each holding the next under name(i),
// with one file at the bottom, and returns the top tree.
func nested(t *testing.T, gitDir string, depth int, name func(int) string) plumbing.Hash {
	h := writeLoose(t, gitDir, plumbing.BlobObject, []byte("leaf\n"), plumbing.ZeroHash)
	h = writeLoose(t, gitDir, plumbing.TreeObject, rawTree(entry{"100644", "leaf", h}), plumbing.ZeroHash)
	for i := depth - 1; i >= 0; i-- {
		h = writeLoose(t, gitDir, plumbing.TreeObject, rawTree(entry{"40000", name(i), h}), plumbing.ZeroHash)
	}
	return h
}

// Paths are bounded: the walk keeps the path of every tree it reads, so a
// chain of long names (a few KB compressed) made it hold the sum of all
// their prefixes, quadratic in the depth (found by the QA campaign: a 2.6 MB
// workspace took 1.7 GB and 13 s). A path no Linux file system can hold is
// refused before it is kept; an ordinary deep tree still syncs.
func TestSyncBoundsPathLength(t *testing.T) {
	long := func(i int) string { return fmt.Sprintf("%04d%s", i, strings.Repeat("n", 2000)) }
	host, ws := newPair(t)
	g := filepath.Join(ws, ".git")
	craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "long", nested(t, g, 300, long)}), plumbing.ZeroHash))
	before := snapshot(t, host)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err := Sync(context.Background(), opts(host, ws))
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "path") {
		t.Fatalf("sync of 300 nested 2 KB names: %v, want a refusal naming the path", err)
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 100<<20 {
		t.Errorf("allocated %d MiB to refuse it", got>>20)
	}
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("host changed after a refused sync: %v", d)
	}

	host, ws = newPair(t)
	g = filepath.Join(ws, ".git")
	craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "deep", nested(t, g, 500, func(int) string { return "d" })}), plumbing.ZeroHash))
	if _, err := Sync(context.Background(), opts(host, ws)); err != nil {
		t.Fatalf("sync of 500 nested short names: %v", err)
	}
}

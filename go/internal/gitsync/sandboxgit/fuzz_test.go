package sandboxgit

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Every parser of sandbox bytes has a fuzz target here; the seed corpus in
// testdata/fuzz holds real trees, commits, deltas, indexes and objects (made by
// TestWriteFuzzSeeds) and crafted ones. `go test -fuzz FuzzX` explores further;
// the repository's fuzz script runs each for a few seconds.

func FuzzParseTree(f *testing.F) {
	f.Add([]byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa40000 b\x00bbbbbbbbbbbbbbbbbbbb"))
	f.Add([]byte("40000 .git\x00aaaaaaaaaaaaaaaaaaaa"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var names []string
		err := ParseTree(data, func(name []byte, mode Mode, h plumbing.Hash) error {
			names = append(names, string(name))
			return nil
		})
		if err != nil {
			return
		}
		// What passes is a tree go-git reads the same way.
		var tree object.Tree
		o := &plumbing.MemoryObject{}
		o.SetType(plumbing.TreeObject)
		o.Write(data)
		if err := tree.Decode(o); err != nil {
			t.Fatalf("accepted a tree go-git cannot decode: %v", err)
		}
		if len(tree.Entries) != len(names) {
			t.Fatalf("%d entries, go-git reads %d", len(names), len(tree.Entries))
		}
		for i, e := range tree.Entries {
			if e.Name != names[i] || CheckEntryName(e.Name) != nil {
				t.Fatalf("entry %d: %q, go-git reads %q", i, names[i], e.Name)
			}
		}
	})
}

func FuzzCheckEntryName(f *testing.F) {
	for _, s := range []string{"a", ".git", ".GIT.", "git~1", ".g\u200cit", "..", "a/b", ".gitmodules"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckEntryName(name) != nil {
			return
		}
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") ||
			strings.EqualFold(strings.TrimRight(name, ". "), ".git") {
			t.Fatalf("accepted %q", name)
		}
	})
}

func FuzzCheckBranchName(f *testing.F) {
	for _, s := range []string{"main", "feature/x", "../x", "a..b", "HEAD", "a.lock"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckBranchName(name) != nil {
			return
		}
		if name == "" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") || strings.Contains(name, "//") ||
			strings.ContainsAny(name, " ~^:?*[\\\x00\x7f") {
			t.Fatalf("accepted %q", name)
		}
	})
}

func FuzzParseCommit(f *testing.F) {
	f.Add([]byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nsubject\n\nbody\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCommit(data)
		if err != nil {
			return
		}
		var gc object.Commit
		o := &plumbing.MemoryObject{}
		o.SetType(plumbing.CommitObject)
		o.Write(data)
		if err := gc.Decode(o); err != nil {
			return // go-git is stricter about some headers; index-pack decides
		}
		if lateTreeOrParent(data) {
			return // go-git reads them; git, whose reading counts, does not
		}
		if gc.TreeHash != c.Tree || len(gc.ParentHashes) != len(c.Parents) {
			t.Fatalf("tree %s parents %v; go-git reads %s %v", c.Tree, c.Parents, gc.TreeHash, gc.ParentHashes)
		}
	})
}

// lateTreeOrParent reports whether a commit's header has a "tree" or "parent"
// line after its "committer" line, as go-git splits header lines.
func lateTreeOrParent(data []byte) bool {
	header, _, _ := bytes.Cut(data, []byte("\n\n"))
	committed := false
	for _, l := range bytes.Split(header, []byte("\n")) {
		key, _, _ := bytes.Cut(bytes.TrimSpace(l), []byte(" "))
		switch string(key) {
		case "committer":
			committed = true
		case "tree", "parent":
			if committed {
				return true
			}
		}
	}
	return false
}

func FuzzPatchDelta(f *testing.F) {
	f.Add([]byte("hello world"), []byte{11, 11, 0x90, 11})
	f.Add([]byte("abc"), []byte{3, 6, 0x91, 0, 3, 3, 'x', 'y', 'z'})
	f.Fuzz(func(t *testing.T, base, delta []byte) {
		out, err := PatchDelta(base, delta, 1<<20)
		if err != nil {
			return
		}
		_, target, _, _ := DeltaSizes(delta)
		if int64(len(out)) != target {
			t.Fatalf("built %d bytes, declared %d", len(out), target)
		}
		// What passes, git's algorithm (go-git's copy of it) builds the same
		// way; go-git 5.16 alone refuses an empty target, which git accepts.
		ref, err := packfile.PatchDelta(base, delta)
		if target == 0 && err != nil {
			return
		}
		if err != nil || !bytes.Equal(ref, out) {
			t.Fatalf("go-git: %v, %d bytes; ours %d bytes", err, len(ref), len(out))
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add(minimalIndex(plumbing.NewHash("0123456789abcdef0123456789abcdef01234567"), 12), int64(64))
	f.Fuzz(func(t *testing.T, data []byte, packSize int64) {
		x, err := ParseIndex(data, packSize)
		if err != nil {
			return
		}
		for i := 0; i < x.Count(); i++ {
			if x.Find(x.Hash(i)) != i || x.Offset(i) < 12 || x.Offset(i) >= packSize-20 {
				t.Fatalf("entry %d: find %d, offset %d", i, x.Find(x.Hash(i)), x.Offset(i))
			}
		}
	})
}

// minimalIndex is the index of a pack holding one object h at off.
func minimalIndex(h plumbing.Hash, off uint32) []byte {
	var b bytes.Buffer
	b.Write(idxMagic)
	for i := 0; i < 256; i++ {
		n := uint32(0)
		if i >= int(h[0]) {
			n = 1
		}
		binary.Write(&b, binary.BigEndian, n)
	}
	b.Write(h[:])
	b.Write(make([]byte, 4))
	binary.Write(&b, binary.BigEndian, off)
	b.Write(make([]byte, 40))
	return b.Bytes()
}

// FuzzLooseObject reads data as a loose object file.
func FuzzLooseObject(f *testing.F) {
	f.Add(deflate([]byte("blob 5\x00hello")))
	f.Add(deflate([]byte("tree 99999999999\x00")))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		h := plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")
		p := filepath.Join(dir, ".git", "objects", "01", h.String()[2:])
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, data, 0o644)
		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		typ, got, err := r.readObject(h, 1<<20)
		if err == nil && !typ.Valid() {
			t.Fatalf("type %v", typ)
		}
		if err == nil {
			_, size, rc, err := r.OpenObject(h)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if _, err := b.ReadFrom(rc); err != nil || size != int64(len(got)) || !bytes.Equal(b.Bytes(), got) {
				t.Fatalf("stream and read differ: %v", err)
			}
			rc.Close()
		}
	})
}

// FuzzPackEntry reads data as the entry at offset 12 of a pack (and, for a
// delta, its base: another entry of the same pack).
func FuzzPackEntry(f *testing.F) {
	blob := append([]byte{0x35}, deflate([]byte("hello"))...)
	f.Add(blob)
	f.Add(append([]byte{0x65, 0x0c}, deflate([]byte{5, 5, 0x90, 5})...)) // an OFS_DELTA onto itself
	f.Fuzz(func(t *testing.T, entry []byte) {
		dir := t.TempDir()
		pack := append([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01"), entry...)
		pack = append(pack, make([]byte, 20)...)
		h := plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")
		base := filepath.Join(dir, ".git", "objects", "pack", "pack-x")
		os.MkdirAll(filepath.Dir(base), 0o755)
		os.WriteFile(base+".pack", pack, 0o644)
		os.WriteFile(base+".idx", minimalIndex(h, 12), 0o644)
		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.readObject(h, 1<<20)
		if s, err := r.Locate(h); err == nil {
			r.ObjectSize(s)
			var b bytes.Buffer
			r.CopyStored(&b, s)
		}
		if _, _, rc, err := r.OpenObject(h); err == nil {
			var b bytes.Buffer
			b.ReadFrom(rc)
			rc.Close()
		}
	})
}

func FuzzPackedRefs(f *testing.F) {
	f.Add([]byte("# pack-refs with: peeled fully-peeled sorted \n0123456789abcdef0123456789abcdef01234567 refs/heads/main\n^0123456789abcdef0123456789abcdef01234567\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		found := map[string]plumbing.Hash{}
		if parsePackedRefs(data, found) != nil {
			return
		}
		if len(found) > MaxBranches {
			t.Fatalf("%d branches", len(found))
		}
	})
}

func deflate(b []byte) []byte {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// FuzzParseTreeSince: given a valid older version, it refuses exactly what
// ParseTree refuses and reports exactly the entries the older one lacks.
func FuzzParseTreeSince(f *testing.F) {
	a := []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa40000 b\x00bbbbbbbbbbbbbbbbbbbb")
	f.Add(a, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaab40000 b\x00bbbbbbbbbbbbbbbbbbbb100644 c\x00cccccccccccccccccccc"))
	f.Add(a, []byte("40000 .git\x00aaaaaaaaaaaaaaaaaaaa"))
	// Entries with old's bytes around an inserted one, a changed hash, a repeated name.
	f.Add(a, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa100644 a0\x00cccccccccccccccccccc40000 b\x00bbbbbbbbbbbbbbbbbbbb"))
	f.Add(a, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa40000 b\x00bbbbbbbbbbbbbbbbbbbc"))
	f.Add(a, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa40000 b.\x00bbbbbbbbbbbbbbbbbbbb40000 b\x00bbbbbbbbbbbbbbbbbbbb"))
	f.Add(a, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa40000 b\x00bbbbbbbbbbbbbbbbbbbb100644 b\x00bbbbbbbbbbbbbbbbbbbb"))
	// A pending file name before the bytes shared at the start, and after a new entry before the bytes shared at the end.
	ab := []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa100644 a-b\x00aaaaaaaaaaaaaaaaaaaa40000 b\x00bbbbbbbbbbbbbbbbbbbb")
	f.Add(ab, []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa100644 a-b\x00aaaaaaaaaaaaaaaaaaaa40000 a\x00bbbbbbbbbbbbbbbbbbbb40000 b\x00bbbbbbbbbbbbbbbbbbbb"))
	f.Add([]byte("100644 a-b\x00aaaaaaaaaaaaaaaaaaaa40000 a\x00bbbbbbbbbbbbbbbbbbbb"), []byte("100644 a\x00aaaaaaaaaaaaaaaaaaaa100644 a-b\x00aaaaaaaaaaaaaaaaaaaa40000 a\x00bbbbbbbbbbbbbbbbbbbb"))
	f.Fuzz(func(t *testing.T, old, data []byte) {
		type ent struct {
			name string
			mode Mode
			h    plumbing.Hash
		}
		collect := func(tree []byte) (map[ent]bool, error) {
			m := map[ent]bool{}
			return m, ParseTree(tree, func(name []byte, mode Mode, h plumbing.Hash) error {
				m[ent{string(name), mode, h}] = true
				return nil
			})
		}
		olds, err := collect(old)
		if err != nil {
			return
		}
		all, errAll := collect(data)
		got := map[ent]bool{}
		v, errSince := ParseTreeSince(data, version(t, old), func(name []byte, mode Mode, h plumbing.Hash) error {
			got[ent{string(name), mode, h}] = true
			return nil
		})
		if (errAll == nil) != (errSince == nil) {
			t.Fatalf("ParseTree: %v; ParseTreeSince: %v", errAll, errSince)
		}
		if errAll != nil {
			return
		}
		for e := range all {
			if got[e] == olds[e] {
				t.Fatalf("entry %+v: reported %v, in the old version %v", e, got[e], olds[e])
			}
		}
		checkVersion(t, v)
	})
}

func FuzzParseDirCache(f *testing.F) {
	f.Add([]byte("DIRC\x00\x00\x00\x02\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dc, err := ParseDirCache(data)
		if err != nil {
			return
		}
		if len(dc.Entries) > len(data)/42 {
			t.Fatalf("%d entries from %d bytes", len(dc.Entries), len(data))
		}
		for _, e := range dc.Entries {
			if e.Path == "" {
				t.Fatal("an entry without a name")
			}
		}
	})
}

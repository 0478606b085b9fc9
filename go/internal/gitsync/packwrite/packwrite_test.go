package packwrite

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

type object struct {
	typ  plumbing.ObjectType
	data []byte
	path string
}

// writeAll writes objects through every kind of entry: raw copies for even
// ones, streams for large ones, and versions of one path as deltas.
func writeAll(t testing.TB, objs []object) []byte {
	var pack bytes.Buffer
	p, err := New(&pack, uint32(len(objs)))
	if err != nil {
		t.Fatal(err)
	}
	var deltas Deltas
	for i, o := range objs {
		switch {
		case len(o.data) > 1<<16:
			err = p.Stream(o.typ, int64(len(o.data)), bytes.NewReader(o.data))
		case i%3 == 1:
			err = p.Raw(o.typ, int64(len(o.data)), plumbing.ZeroHash, func(w io.Writer) error {
				zw := zlib.NewWriter(w)
				zw.Write(o.data)
				return zw.Close()
			})
		default:
			err = p.Add(deltas.Entry(o.typ, o.data, o.path))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return pack.Bytes()
}

// parse reads a pack with go-git's parser into memory.
func parse(pack []byte) (*memory.Storage, error) {
	st := memory.NewStorage()
	parser, err := packfile.NewParserWithStorage(packfile.NewScanner(bytes.NewReader(pack)), st)
	if err != nil {
		return nil, err
	}
	_, err = parser.Parse()
	return st, err
}

func checkRoundTrip(t testing.TB, objs []object) {
	st, err := parse(writeAll(t, objs))
	if err != nil {
		t.Fatalf("go-git cannot parse the pack: %v", err)
	}
	for _, o := range objs {
		h := plumbing.ComputeHash(o.typ, o.data)
		got, err := st.EncodedObject(o.typ, h)
		if err != nil {
			t.Fatalf("%s %d bytes: %v", o.typ, len(o.data), err)
		}
		r, _ := got.Reader()
		b, _ := io.ReadAll(r)
		if !bytes.Equal(b, o.data) {
			t.Fatalf("%s: content differs", h)
		}
	}
}

func versions() []object {
	var objs []object
	text := ""
	for i := 0; i < 40; i++ {
		text += fmt.Sprintf("line %d\n", i)
		objs = append(objs, object{plumbing.BlobObject, []byte(text), "f.txt"})
		if i%10 == 9 {
			objs = append(objs, object{plumbing.BlobObject, nil, "f.txt"}) // emptied
		}
	}
	return append(objs, object{plumbing.BlobObject, bytes.Repeat([]byte("big "), 1<<15), "big"},
		object{plumbing.TreeObject, nil, "/"}, object{plumbing.CommitObject, []byte("tree x\n"), ""})
}

// TestPackIsValid: go-git's parser and the host's `git index-pack --strict`
// read back every object written, including deltas to empty targets' neighbours.
func TestPackIsValid(t *testing.T) {
	objs := versions()
	checkRoundTrip(t, objs)
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	if out, err := exec.Command(git, "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var blobs []object
	seen := map[plumbing.Hash]bool{}
	for _, o := range objs {
		h := plumbing.ComputeHash(o.typ, o.data)
		if o.typ == plumbing.BlobObject && !seen[h] { // git wants each object once; these commits and trees are not valid
			seen[h] = true
			blobs = append(blobs, o)
		}
	}
	cmd := exec.Command(git, "-C", dir, "index-pack", "--stdin", "--strict", filepath.Join(dir, "x.pack"))
	cmd.Stdin = bytes.NewReader(writeAll(t, blobs))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git index-pack --strict: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.idx")); err != nil {
		t.Fatal(err)
	}
}

func TestMakeDeltaAppliesBack(t *testing.T) {
	for _, c := range [][2]string{
		{"hello world", "hello there world"}, {"abc", "abcabc"}, {"", "x"}, {"x", ""},
		{strings.Repeat("a", 200000), strings.Repeat("a", 100000) + "b" + strings.Repeat("a", 100000)},
	} {
		d := MakeDelta([]byte(c[0]), []byte(c[1]))
		if d == nil {
			continue
		}
		out, err := sandboxgit.PatchDelta([]byte(c[0]), d, 1<<30)
		if err != nil || string(out) != c[1] {
			t.Errorf("delta %q → %q: %v, %q", c[0], c[1], err, out)
		}
		if len(d) < 4 {
			t.Errorf("delta %q → %q is %d bytes, fewer than git accepts", c[0], c[1], len(d))
		}
	}
}

func TestCloseCountsEntries(t *testing.T) {
	p, _ := New(io.Discard, 2)
	p.Add(Full(plumbing.BlobObject, []byte("one")))
	if _, err := p.Close(); err == nil {
		t.Fatal("a pack with fewer entries than declared was closed without error")
	}
}

// FuzzRoundTrip writes versions of a file (deltas, full entries, raw copies)
// and reads the pack back with go-git's parser, and every delta with
// sandboxgit's.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), []byte("hello world"), []byte(""))
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), []byte("a\nB\nc\nd\n"))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		objs := []object{{plumbing.BlobObject, a, "p"}, {plumbing.BlobObject, b, "p"}, {plumbing.BlobObject, c, "p"},
			{plumbing.BlobObject, b, "q"}, {plumbing.BlobObject, a, "p"}}
		checkRoundTrip(t, objs)
		for _, pair := range [][2][]byte{{a, b}, {b, c}, {c, a}} {
			if d := MakeDelta(pair[0], pair[1]); d != nil {
				out, err := sandboxgit.PatchDelta(pair[0], d, 1<<30)
				if err != nil || !bytes.Equal(out, pair[1]) {
					t.Fatalf("delta does not apply back: %v", err)
				}
			}
		}
	})
}

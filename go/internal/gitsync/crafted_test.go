package gitsync

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/gitcraft"
	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// TestSyncBoundsCraftedObjects: objects whose headers or deltas claim far more
// than they hold are refused before anything that size is allocated (issue 14
// item 5); the host is unchanged and the process stays small.
func TestSyncBoundsCraftedObjects(t *testing.T) {
	blob := []byte("x\n")
	for _, tc := range []struct {
		name  string
		craft func(t *testing.T, g string) []entry
	}{
		{"loose blob claiming 4 GiB", func(t *testing.T, g string) []entry {
			return []entry{{"100644", "bomb", gitcraft.LooseBomb(t, g, "blob", 4<<30)}}
		}},
		{"loose blob claiming 900 MiB", func(t *testing.T, g string) []entry {
			return []entry{{"100644", "bomb", gitcraft.LooseBomb(t, g, "blob", 900<<20)}}
		}},
		{"loose tree claiming 60 MiB", func(t *testing.T, g string) []entry {
			return []entry{{"40000", "bomb", gitcraft.LooseBomb(t, g, "tree", 60<<20)}}
		}},
		{"delta of 20000 copies whose base travels", func(t *testing.T, g string) []entry {
			base, bomb := gitcraft.CopyBombPack(t, g, 20000)
			return []entry{{"100644", "base", base}, {"100644", "bomb", bomb}}
		}},
		{"delta of 20000 copies whose base stays", func(t *testing.T, g string) []entry {
			_, bomb := gitcraft.CopyBombPack(t, g, 20000)
			return []entry{{"100644", "bomb", bomb}}
		}},
		{"file entry naming a tree stored as a delta", func(t *testing.T, g string) []entry {
			b := writeLoose(t, g, plumbing.BlobObject, []byte("b\n"), plumbing.ZeroHash)
			t0 := rawTree(entry{"100644", "a", b})
			x := rawTree(entry{"100644", "a", b}, entry{"100644", "b", b})
			gitcraft.Pack(t, g, []gitcraft.PackEntry{gitcraft.Whole(plumbing.ComputeHash(plumbing.TreeObject, t0), plumbing.TreeObject, t0),
				gitcraft.OfsDelta(plumbing.ComputeHash(plumbing.TreeObject, x), gitcraft.InsertDelta(t0, x), 0)}, 0)
			return []entry{{"100644", "bomb", plumbing.ComputeHash(plumbing.TreeObject, x)}, {"40000", "d", plumbing.ComputeHash(plumbing.TreeObject, t0)}}
		}},
		{"index with an out-of-range 64-bit offset", func(t *testing.T, g string) []entry {
			gitcraft.Pack(t, g, []gitcraft.PackEntry{gitcraft.Whole(plumbing.ComputeHash(plumbing.BlobObject, blob), plumbing.BlobObject, blob)}, 1<<40)
			return []entry{{"100644", "base", plumbing.ComputeHash(plumbing.BlobObject, blob)}}
		}},
	} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/split=%v", tc.name, split), func(t *testing.T) {
				if split {
					splitAlways(t)
				}
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

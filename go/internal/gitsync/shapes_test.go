package gitsync

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// Histories that honest git produces and that once made keystone write packs
// git could not read (issue 14 item 1, issue 11 item 0). Each is synced in one
// go; the host must pass `git fsck --strict --full` and match the workspace.
func TestSyncHistoryShapes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape func(t *testing.T, ws string) string // returns the workspace tip
	}{
		{"file added then emptied", func(t *testing.T, ws string) string {
			commit(t, ws, "add", map[string]string{"notes.txt": "some notes\nmore notes\n"})
			return commit(t, ws, "empty it", map[string]string{"notes.txt": ""})
		}},
		{"whole tree emptied after a new commit", func(t *testing.T, ws string) string {
			commit(t, ws, "more", map[string]string{"extra.txt": "x\n"})
			gitIn(t, ws, "rm", "-q", "-r", ".")
			return commit(t, ws, "empty tree", nil)
		}},
		{"tree entry name with a newline", func(t *testing.T, ws string) string {
			commit(t, ws, "odd name", map[string]string{"odd\nname.txt": "odd\n"})
			return commit(t, ws, "edit", map[string]string{"odd\nname.txt": "odder\n", "README.md": "hello\nagain\n"})
		}},
		{"deep delta chains of large files across packs", deepDeltaChains},
	} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/split=%v", tc.name, split), func(t *testing.T) {
				if split {
					splitAlways(t)
				}
				host, ws := newPair(t)
				tip := tc.shape(t, ws)
				r := mustSync(t, opts(host, ws))
				if r.Result != ResultFastForwarded || gitIn(t, host, "rev-parse", "main") != tip {
					t.Fatalf("result %q, host main %s, want %s", r.Result, gitIn(t, host, "rev-parse", "main"), tip)
				}
				gitIn(t, host, "fsck", "--strict", "--full", "--no-dangling")
				if a, b := gitIn(t, host, "ls-tree", "-r", "main"), gitIn(t, ws, "ls-tree", "-r", "main"); a != b {
					t.Errorf("trees differ between host and workspace")
				}
				noTemporaries(t, host)
			})
		}
	}
}

// splitAlways has every sync of the test that brings blobs send them in a
// pack of their own.
func splitAlways(t *testing.T) {
	old := splitFrom
	splitFrom = 0
	t.Cleanup(func() { splitFrom = old })
}

// The blobs' pack and the commits' and trees' pack are verified side by side;
// the second names the first's blobs, which its index-pack finds only once
// they are verified. When it is done before them (here: the blobs held back
// until then, as a large blob does by itself), it is verified once more, and
// the sync succeeds, dry run (its line count reads both packs' directories)
// and real.
func TestSyncSplitVerifiesAgain(t *testing.T) {
	splitAlways(t)
	holdBlobsForTest = true
	t.Cleanup(func() { holdBlobsForTest = false })
	host, ws := newPair(t)
	big := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(big)
	commit(t, ws, "a large file and a small one", map[string]string{"big.bin": string(big), "notes.txt": "one\ntwo\n"})
	before := snapshot(t, host)
	again := verifiedAgain.Load()
	o := opts(host, ws)
	o.DryRun = true
	r := mustSync(t, o)
	if r.Insertions != 2 {
		t.Errorf("dry run: %d insertions, want 2", r.Insertions)
	}
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("host changed by a dry run: %v", d)
	}
	r = mustSync(t, opts(host, ws))
	if r.Result != ResultFastForwarded || r.Insertions != 2 {
		t.Fatalf("result %q, %d insertions", r.Result, r.Insertions)
	}
	if n := verifiedAgain.Load() - again; n != 2 {
		t.Errorf("the pack of commits and trees was verified again %d times in two syncs, want 2", n)
	}
	gitIn(t, host, "fsck", "--strict", "--full", "--no-dangling")
	if packs := len(globT(t, filepath.Join(host, ".git", "objects", "pack", "pack-*.idx"))); packs != 2 {
		t.Errorf("%d packs in the host, want 2 (the blobs', the rest's)", packs)
	}
	noTemporaries(t, host)
}

func globT(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deepDeltaChains gives the workspace a file over 64 KiB edited in many
// commits, each removing a duplicated line near the top and inserting a block
// right after it, repacked by git into chains up to 50 deep (older versions as
// deltas against newer ones: a delta that copies backwards in its base, then
// jumps forward), plus a second pack on top. It is the shape of the real
// fetched history (nixpkgs.lib) that go-git's streaming delta reader read
// wrongly: after a backward copy it lost its place in the base.
func deepDeltaChains(t *testing.T, ws string) string {
	rng := rand.New(rand.NewSource(1))
	var lines []string
	for i := 0; i < 1200; i++ {
		l := fmt.Sprintf("line %d %x %x %x\n", i, rng.Int63(), rng.Int63(), rng.Int63())
		lines = append(lines, l)
		if i%5 == 4 && i < 300 {
			lines = append(lines, l)
		}
	}
	var tip string
	for i := 0; i < 50; i++ {
		at := 5*i + 4 + i*(1-1) // the next duplicated line, counted in the original file
		for j := 0; j+1 < len(lines); j++ {
			if lines[j] == lines[j+1] && j >= at-5 {
				block := make([]string, 60)
				for k := range block {
					block[k] = fmt.Sprintf("inserted %d.%d %x %x\n", i, k, rng.Int63(), rng.Int63())
				}
				lines = append(lines[:j+1], append(block, lines[j+2:]...)...)
				break
			}
		}
		tip = commit(t, ws, fmt.Sprint("edit ", i), map[string]string{"big.txt": strings.Join(lines, "")})
		if i == 40 {
			gitIn(t, ws, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=250")
		}
	}
	gitIn(t, ws, "repack", "-q", "-d", "--depth=50", "--window=250")
	return tip
}

// noTemporaries fails when a sync left a temporary file in the host's objects.
func noTemporaries(t *testing.T, host string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(host, ".git", "objects", "pack"))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "pack-") {
			t.Errorf("left behind in objects/pack: %s", e.Name())
		}
	}
	if left := globT(t, filepath.Join(host, ".git", "objects", incomingPrefix+"*")); len(left) > 0 {
		t.Errorf("left behind in objects: %v", left)
	}
}

var _ = plumbing.ZeroHash
var _ = context.Background

// The blob pack's directory reaches the other index-pack (and, in a dry run,
// the line count) through GIT_ALTERNATE_OBJECT_DIRECTORIES, where ':' separates
// directories: a host repository whose path holds ':', '"' or '\' still syncs
// both ways.
func TestSyncSplitOddHostPath(t *testing.T) {
	splitAlways(t)
	src, ws := newPair(t)
	host := filepath.Join(t.TempDir(), `odd:dir "quoted" back\slash`, "project")
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(src, host); err != nil {
		t.Fatal(err)
	}
	tip := commit(t, ws, "work", map[string]string{"a.txt": "a\n", "b/c.txt": "c\nd\n"})
	o := opts(host, ws)
	o.DryRun = true
	if r := mustSync(t, o); r.Insertions != 3 {
		t.Errorf("dry run: %d insertions, want 3", r.Insertions)
	}
	if r := mustSync(t, opts(host, ws)); r.Result != ResultFastForwarded || r.Insertions != 3 || gitIn(t, host, "rev-parse", "main") != tip {
		t.Fatalf("result %q, %d insertions, host main %s, want %s", r.Result, r.Insertions, gitIn(t, host, "rev-parse", "main"), tip)
	}
	gitIn(t, host, "fsck", "--strict", "--full", "--no-dangling")
	entries, _ := os.ReadDir(filepath.Join(host, ".git", "objects", "pack")) // the path is no glob pattern
	packs := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".idx") {
			packs++
		}
	}
	if packs != 2 {
		t.Errorf("%d packs in the host, want 2", packs)
	}
}

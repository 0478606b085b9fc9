package gitsync

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// markerScript writes an executable that records that it ran.
func markerScript(t *testing.T, path, markers string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\necho \"$0 $*\" >> %s/$(basename \"$0\")-%s\ncat\n", markers, filepath.Base(filepath.Dir(path)))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func noMarkers(t *testing.T, markers string) {
	t.Helper()
	entries, _ := os.ReadDir(markers)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(markers, e.Name()))
		t.Errorf("workspace-controlled program ran on the host: %s: %s", e.Name(), b)
	}
}

// TestSyncNeverRunsWorkspaceGit arms every way a repository can make a git on the
// host run code: hooks, core.hooksPath, core.fsmonitor, filters selected by
// .gitattributes, and a fake git/git-upload-pack first on PATH. Sync must still
// fast-forward (with the pinned trusted git) and no marker may appear.
func TestSyncNeverRunsWorkspaceGit(t *testing.T) {
	host, ws := newPair(t)
	markers := t.TempDir()
	home := t.TempDir()
	write(t, filepath.Join(home, ".ssh", "id_ed25519"), "secret\n")
	homeBefore := snapshot(t, home)

	c := commit(t, ws, "agent", map[string]string{".gitattributes": "* filter=evil diff=evil merge=evil\n", "a.txt": "a\n"})
	hooks := filepath.Join(ws, ".git", "hooks")
	for _, h := range []string{"pre-commit", "post-merge", "post-checkout", "reference-transaction",
		"pre-auto-gc", "post-rewrite", "fsmonitor-watchman", "pre-push", "post-update"} {
		markerScript(t, filepath.Join(hooks, h), markers)
		markerScript(t, filepath.Join(ws, "evilhooks", h), markers)
	}
	bin := filepath.Join(ws, "bin")
	for _, b := range []string{"git", "git-upload-pack", "git-receive-pack", "ssh"} {
		markerScript(t, filepath.Join(bin, b), markers)
	}
	f, err := os.OpenFile(filepath.Join(ws, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `[core]
	hooksPath = %[1]s/evilhooks
	fsmonitor = %[1]s/bin/git
	pager = %[1]s/bin/git
	sshCommand = %[1]s/bin/ssh
[filter "evil"]
	smudge = %[1]s/bin/git smudge
	clean = %[1]s/bin/git clean
	process = %[1]s/bin/git process
	required = true
[diff "evil"]
	textconv = %[1]s/bin/git textconv
[merge "evil"]
	driver = %[1]s/bin/git merge
[uploadpack]
	packObjectsHook = %[1]s/bin/git
[include]
	path = %[1]s/evil.config
`, ws)
	f.Close()
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	r, err := Sync(context.Background(), opts(host, ws))
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if r.Result != ResultFastForwarded || gitIn(t, host, "rev-parse", "main") != c {
		t.Fatalf("result %q; host main not fast-forwarded", r.Result)
	}
	noMarkers(t, markers)
	if d := diffSnapshots(homeBefore, snapshot(t, home)); len(d) > 0 {
		t.Errorf("files outside the project changed: %v", d)
	}
	if got := r.Review; len(got) != 1 || got[0].Path != ".gitattributes" {
		t.Errorf("review: %+v", got)
	}
}

// writeLoose stores raw as a loose object of type typ in the repository at gitDir
// (bypassing every check git would make) and returns its name. With name set, the
// object is stored under that name instead: a corrupt object.
func writeLoose(t *testing.T, gitDir string, typ plumbing.ObjectType, raw []byte, name plumbing.Hash) plumbing.Hash {
	t.Helper()
	h := plumbing.ComputeHash(typ, raw)
	if !name.IsZero() {
		h = name
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	fmt.Fprintf(zw, "%s %d\x00", typ, len(raw))
	zw.Write(raw)
	zw.Close()
	p := filepath.Join(gitDir, "objects", h.String()[:2], h.String()[2:])
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, buf.Bytes(), 0o444); err != nil {
		t.Fatal(err)
	}
	return h
}

type entry struct {
	mode string
	name string
	hash plumbing.Hash
}

func rawTree(entries ...entry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s\x00", e.mode, e.name)
		b.Write(e.hash[:])
	}
	return b.Bytes()
}

// craftedCommit makes the workspace's main a commit on top of its HEAD whose tree is root.
func craftedCommit(t *testing.T, ws string, root plumbing.Hash) {
	gitDir := filepath.Join(ws, ".git")
	parent := gitIn(t, ws, "rev-parse", "HEAD")
	raw := fmt.Sprintf("tree %s\nparent %s\nauthor A <a@x> 1700000000 +0000\ncommitter A <a@x> 1700000000 +0000\n\ncrafted\n", root, parent)
	c := writeLoose(t, gitDir, plumbing.CommitObject, []byte(raw), plumbing.ZeroHash)
	write(t, filepath.Join(gitDir, "refs", "heads", "main"), c.String()+"\n")
}

func TestSyncRejectsCraftedRepositories(t *testing.T) {
	blob := func(gitDir string) plumbing.Hash {
		return writeLoose(t, gitDir, plumbing.BlobObject, []byte("payload\n"), plumbing.ZeroHash)
	}
	for _, tc := range []struct {
		name  string
		craft func(t *testing.T, ws string)
	}{
		{"entry named ..", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			sub := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "x", blob(g)}), plumbing.ZeroHash)
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "..", sub}), plumbing.ZeroHash))
		}},
		{"entry named .git", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			hooks := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100755", "post-merge", blob(g)}), plumbing.ZeroHash)
			sub := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "hooks", hooks}), plumbing.ZeroHash)
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", ".git", sub}), plumbing.ZeroHash))
		}},
		{"entry named .GIT in a subdirectory", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			inner := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "config", blob(g)}), plumbing.ZeroHash)
			sub := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", ".GIT", inner}), plumbing.ZeroHash)
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "src", sub}), plumbing.ZeroHash))
		}},
		{"entry with a slash", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "a/../../x", blob(g)}), plumbing.ZeroHash))
		}},
		{"absolute path entry", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "/etc/passwd", blob(g)}), plumbing.ZeroHash))
		}},
		{"duplicate entries", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			sub := writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "x", blob(g)}), plumbing.ZeroHash)
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "a", blob(g)}, entry{"40000", "a", sub}), plumbing.ZeroHash))
		}},
		{"invalid mode", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"104755", "a", blob(g)}), plumbing.ZeroHash))
		}},
		{"symlinked .gitmodules", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"120000", ".gitmodules", blob(g)}), plumbing.ZeroHash))
		}},
		{"symlink in .git leading out", func(t *testing.T, ws string) {
			gitIn(t, ws, "repack", "-q", "-a", "-d")
			outside := filepath.Join(t.TempDir(), "objects")
			os.MkdirAll(outside, 0o755)
			pack := filepath.Join(ws, ".git", "objects", "pack")
			entries, _ := os.ReadDir(pack)
			for _, e := range entries {
				os.Rename(filepath.Join(pack, e.Name()), filepath.Join(outside, e.Name()))
				os.Symlink(filepath.Join(outside, e.Name()), filepath.Join(pack, e.Name()))
			}
		}},
		{"corrupt blob", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			claimed := plumbing.ComputeHash(plumbing.BlobObject, []byte("honest\n"))
			writeLoose(t, g, plumbing.BlobObject, []byte("evil\n"), claimed)
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"100644", "f", claimed}), plumbing.ZeroHash))
		}},
		{"blob where a tree should be", func(t *testing.T, ws string) {
			g := filepath.Join(ws, ".git")
			craftedCommit(t, ws, writeLoose(t, g, plumbing.TreeObject, rawTree(entry{"40000", "d", blob(g)}), plumbing.ZeroHash))
		}},
		{"invalid branch name", func(t *testing.T, ws string) {
			write(t, filepath.Join(ws, ".git", "packed-refs"), gitIn(t, ws, "rev-parse", "HEAD")+" refs/heads/../../../HEAD\n")
		}},
		{".git is a gitdir pointer", func(t *testing.T, ws string) {
			os.RemoveAll(filepath.Join(ws, ".git"))
			write(t, filepath.Join(ws, ".git"), "gitdir: /etc\n")
		}},
		{"alternates", func(t *testing.T, ws string) {
			write(t, filepath.Join(ws, ".git", "objects", "info", "alternates"), "/tmp\n")
		}},
	} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/split=%v", tc.name, split), func(t *testing.T) {
				if split {
					splitAlways(t)
				}
				rejectsCrafted(t, tc.name, tc.craft)
			})
		}
	}
}

// rejectsCrafted checks that a sync, dry run and real, refuses a workspace
// crafted by craft on top of honest work, and leaves the host as it was.
func rejectsCrafted(t *testing.T, name string, craft func(t *testing.T, ws string)) {
	host, ws := newPair(t)
	commit(t, ws, "honest work", map[string]string{"ok.txt": "ok\n"})
	craft(t, ws)
	before := snapshot(t, host)
	for _, dry := range []bool{true, false} {
		o := opts(host, ws)
		o.DryRun = dry
		_, err := Sync(context.Background(), o)
		if !errors.Is(err, ErrHostile) && !(strings.Contains(name, "symlink in") && err != nil) {
			t.Fatalf("sync (dry run %v): %v, want ErrHostile", dry, err)
		}
		t.Logf("refused: %v", err)
	}
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("host changed after a refused sync: %v", d)
	}
}

// A FIFO where keystone reads a file of the workspace: opening one for
// reading blocks until a writer comes, so a sandbox that made one (or swapped
// one in) would hang the sync, the status count and the watcher for good.
// Every case must end, refused or not, with the host repository sound.
func TestSyncNeverBlocksOnAFIFO(t *testing.T) {
	mkfifo := func(t *testing.T, p string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.RemoveAll(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		craft func(t *testing.T, ws string) // as the sandbox, after its commit
	}{
		{"a .gitignore of the working tree", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, "sub", ".gitignore")) }},
		{"info/exclude", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "info", "exclude")) }},
		{"HEAD", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "HEAD")) }},
		{"packed-refs", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "packed-refs")) }},
		{"the index", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "index")) }},
		{"a branch directory", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "refs", "heads", "topic")) }},
		{"objects/pack", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, ".git", "objects", "pack")) }},
		{"a pack", func(t *testing.T, ws string) {
			gitIn(t, ws, "repack", "-q", "-a", "-d")
			matches, _ := filepath.Glob(filepath.Join(ws, ".git", "objects", "pack", "*.pack"))
			if len(matches) == 0 {
				t.Fatal("no pack")
			}
			mkfifo(t, matches[0])
		}},
		{"a loose object", func(t *testing.T, ws string) {
			h := gitIn(t, ws, "rev-parse", "HEAD")
			mkfifo(t, filepath.Join(ws, ".git", "objects", h[:2], h[2:]))
		}},
		{"a tracked file, changed", func(t *testing.T, ws string) { mkfifo(t, filepath.Join(ws, "ok.txt")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, ws := newPair(t)
			commit(t, ws, "honest work", map[string]string{"ok.txt": "ok\n", "sub/keep.txt": "k\n"})
			tc.craft(t, ws)
			done := make(chan string, 1)
			go func() {
				var out []string
				for _, dry := range []bool{true, false} {
					o := opts(host, ws)
					o.DryRun = dry
					_, err := Sync(context.Background(), o)
					out = append(out, fmt.Sprintf("sync (dry run %v): %v", dry, err))
				}
				n, err := Pending(context.Background(), opts(host, ws))
				done <- strings.Join(append(out, fmt.Sprintf("pending: %d, %v", n, err)), "; ")
			}()
			select {
			case got := <-done:
				t.Log(got)
			case <-time.After(time.Minute):
				t.Fatal("blocked on the FIFO")
			}
			gitIn(t, host, "fsck", "--strict", "--no-progress") // whatever the sync did, the host is sound
		})
	}
}

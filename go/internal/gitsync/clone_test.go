package gitsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func inodes(t *testing.T, dir string) map[uint64]string {
	m := map[uint64]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			m[fi.Sys().(*syscall.Stat_t).Ino] = p
		}
		return nil
	})
	return m
}

func TestCloneCopiesCommittedHistoryOnly(t *testing.T) {
	host := newHost(t)
	gitIn(t, host, "branch", "feature")
	gitIn(t, host, "tag", "-a", "v1", "-m", "v1")
	gitIn(t, host, "gc", "-q") // a pack in the host: hardlinking it would be tempting
	commit(t, host, "second", map[string]string{"b.txt": "b\n"})
	write(t, filepath.Join(host, "README.md"), "dirty edit\n")
	write(t, filepath.Join(host, "untracked.txt"), "not committed\n")
	before := snapshot(t, host)
	status := gitIn(t, host, "status", "--porcelain")

	ws := filepath.Join(t.TempDir(), "ws")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("host repository changed: %v", d)
	}
	if got := gitIn(t, host, "status", "--porcelain"); got != status {
		t.Errorf("host status changed: %q, was %q", got, status)
	}
	hostInodes := inodes(t, filepath.Join(host, ".git", "objects"))
	for ino, p := range inodes(t, filepath.Join(ws, ".git", "objects")) {
		if hp, ok := hostInodes[ino]; ok {
			t.Errorf("%s shares its inode with the host's %s", p, hp)
		}
	}
	if _, err := os.Stat(filepath.Join(ws, ".git", "objects", "info", "alternates")); err == nil {
		t.Error("workspace has objects/info/alternates")
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "README.md")); string(b) != "hello\n" {
		t.Errorf("README.md = %q, want the committed content", b)
	}
	if _, err := os.Stat(filepath.Join(ws, "untracked.txt")); err == nil {
		t.Error("untracked host file reached the workspace")
	}
	for _, ref := range []string{"refs/heads/main", "refs/heads/feature", "refs/tags/v1"} {
		if a, b := gitIn(t, host, "rev-parse", ref), gitIn(t, ws, "rev-parse", ref); a != b {
			t.Errorf("%s: workspace %s, host %s", ref, b, a)
		}
	}
	if got := gitIn(t, ws, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("workspace HEAD = %s", got)
	}
	if got := gitIn(t, ws, "status", "--porcelain"); got != "" {
		t.Errorf("workspace is not clean:\n%s", got)
	}
	gitIn(t, ws, "fsck", "--strict", "--no-dangling")
}

func TestCloneEmptyRepository(t *testing.T) {
	host := filepath.Join(t.TempDir(), "empty")
	gitIn(t, t.TempDir(), "init", "-q", "-b", "trunk", host)
	ws := filepath.Join(t.TempDir(), "ws")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	if got := gitIn(t, ws, "symbolic-ref", "HEAD"); got != "refs/heads/trunk" {
		t.Errorf("workspace HEAD = %s", got)
	}
}

func TestCloneRefusesNonEmptyWorkspace(t *testing.T) {
	host := newHost(t)
	ws := t.TempDir()
	write(t, filepath.Join(ws, "keep.txt"), "mine\n")
	if err := Clone(context.Background(), host, ws); err == nil {
		t.Fatal("clone into a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "keep.txt")); string(b) != "mine\n" {
		t.Error("existing file was touched")
	}
}

// CloneSteps tells a progress line what it does: the host git's object
// counts while the history is packed, then the checkout.
func TestCloneSteps(t *testing.T) {
	host := newHost(t)
	commit(t, host, "second", map[string]string{"b.txt": "b\n"})
	var steps []string
	if err := CloneSteps(context.Background(), host, filepath.Join(t.TempDir(), "ws"), func(s string) { steps = append(steps, s) }); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(steps, "\n")
	if !strings.Contains(all, "objects: 100% (") || !strings.HasSuffix(all, "checking out main") {
		t.Errorf("steps:\n%s\nwant git's object counts, then \"checking out main\"", all)
	}
}

// A SHA-256 project is refused with a message that says so, before anything
// is created (found by the QA campaign: it failed on index-pack's output).
func TestCloneRefusesSHA256Project(t *testing.T) {
	host := filepath.Join(t.TempDir(), "project")
	gitIn(t, t.TempDir(), "init", "-q", "--object-format=sha256", host)
	commit(t, host, "initial", map[string]string{"a.txt": "a\n"})
	ws := filepath.Join(t.TempDir(), "ws")
	err := Clone(context.Background(), host, ws)
	if err == nil || !strings.Contains(err.Error(), `object format "sha256"`) {
		t.Fatalf("clone of a SHA-256 project: %v, want a refusal naming the object format", err)
	}
	for _, p := range []string{ws, ws + asideSuffix} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}

package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustSync(t *testing.T, o Options) *Report {
	t.Helper()
	r, err := Sync(context.Background(), o)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return r
}

func TestSyncFastForwardsAndLaterSyncsSayNoChanges(t *testing.T) {
	host, ws := newPair(t)
	o := opts(host, ws)
	if _, err := Sync(context.Background(), o); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("sync of a fresh clone: %v, want ErrNoChanges", err)
	}
	c1 := commit(t, ws, "add feature", map[string]string{"feature.go": "package main\n\nfunc f() {}\n", "README.md": "hello\nworld\n"})
	r := mustSync(t, o)
	if r.Result != ResultFastForwarded || len(r.Commits) != 1 || r.Commits[0].Subject != "add feature" {
		t.Fatalf("report: %+v", r)
	}
	if r.FilesChanged != 2 || r.Insertions != 4 || r.Deletions != 0 {
		t.Errorf("stats: %d files, +%d -%d; want 2 files, +4 -0", r.FilesChanged, r.Insertions, r.Deletions)
	}
	if got := gitIn(t, host, "rev-parse", "main"); got != c1 {
		t.Errorf("host main = %s, want %s", got, c1)
	}
	if got := gitIn(t, host, "rev-parse", "refs/remotes/keystone/demo/main"); got != c1 {
		t.Errorf("tracking ref = %s, want %s", got, c1)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "feature.go")); !strings.Contains(string(b), "func f") {
		t.Error("host working tree was not updated")
	}
	if got := gitIn(t, host, "status", "--porcelain"); got != "" {
		t.Errorf("host tree not clean after sync:\n%s", got)
	}
	for i := 0; i < 2; i++ {
		if r, err := Sync(context.Background(), o); !errors.Is(err, ErrNoChanges) || r.Result != ResultUpToDate {
			t.Fatalf("sync %d after the first: %v (%+v), want ErrNoChanges", i+2, err, r)
		}
	}
	c2 := commit(t, ws, "more", map[string]string{"more.txt": "x\n"})
	mustSync(t, o)
	if got := gitIn(t, host, "rev-parse", "main"); got != c2 {
		t.Errorf("host main = %s, want %s", got, c2)
	}
	if _, err := Sync(context.Background(), o); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("sync after the second: %v, want ErrNoChanges", err)
	}
	gitIn(t, host, "fsck", "--strict", "--no-dangling")
}

func TestSyncDryRunChangesNothing(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "agent work", map[string]string{"a.txt": "a\n"})
	gitIn(t, ws, "branch", "topic")
	before := snapshot(t, host)
	o := opts(host, ws)
	o.DryRun = true
	r := mustSync(t, o)
	if !r.DryRun || r.Result != ResultFastForwarded || len(r.Commits) != 1 || len(r.Refs) != 2 {
		t.Fatalf("dry-run report: %+v", r)
	}
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("dry run changed the host: %v", d)
	}
}

func TestSyncDivergedHostKeepsEverything(t *testing.T) {
	host, ws := newPair(t)
	mine := commit(t, host, "host work", map[string]string{"host.txt": "h\n"})
	theirs := commit(t, ws, "agent work", map[string]string{"agent.txt": "a\n"})
	for i := 0; i < 2; i++ {
		r, err := Sync(context.Background(), opts(host, ws))
		var m *ManualMergeError
		if !errors.As(err, &m) || m.Kind != KindDiverged || !errors.Is(err, ErrManualMerge) {
			t.Fatalf("sync %d: %v, want a diverged ManualMergeError", i+1, err)
		}
		if r.Manual == nil || !strings.Contains(strings.Join(m.Commands, "\n"), "git merge refs/remotes/keystone/demo/main") {
			t.Errorf("commands: %q", m.Commands)
		}
		if got := gitIn(t, host, "rev-parse", "main"); got != mine {
			t.Fatalf("host main moved to %s", got)
		}
		if got := gitIn(t, host, "rev-parse", "refs/remotes/keystone/demo/main"); got != theirs {
			t.Fatalf("tracking ref = %s, want %s", got, theirs)
		}
	}
	// The printed command works, and afterwards there is nothing to sync.
	gitIn(t, host, "merge", "-q", "--no-edit", "refs/remotes/keystone/demo/main")
	if _, err := Sync(context.Background(), opts(host, ws)); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("after a manual merge: %v, want ErrNoChanges", err)
	}
}

func TestSyncRefusesToOverwriteHostFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, host string)
		file  string
	}{
		{"modified tracked file", func(t *testing.T, h string) { write(t, filepath.Join(h, "README.md"), "my edit\n") }, "README.md"},
		{"staged change", func(t *testing.T, h string) {
			write(t, filepath.Join(h, "README.md"), "staged\n")
			gitIn(t, h, "add", "README.md")
		}, "README.md"},
		{"untracked file in the way", func(t *testing.T, h string) { write(t, filepath.Join(h, "new.txt"), "mine\n") }, "new.txt"},
		{"ignored file in the way", func(t *testing.T, h string) {
			write(t, filepath.Join(h, ".git", "info", "exclude"), "secret.env\n")
			write(t, filepath.Join(h, "secret.env"), "TOKEN=1\n")
		}, "secret.env"},
		{"untracked directory in the way", func(t *testing.T, h string) { write(t, filepath.Join(h, "gen", "x"), "mine\n") }, "gen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, ws := newPair(t)
			commit(t, ws, "agent", map[string]string{"README.md": "agent\n", "new.txt": "agent\n", "secret.env": "agent\n", "gen": "file\n"})
			tc.setup(t, host)
			before := snapshot(t, host)
			head := gitIn(t, host, "rev-parse", "HEAD")
			_, err := Sync(context.Background(), opts(host, ws))
			var m *ManualMergeError
			if !errors.As(err, &m) || m.Kind != KindDirty {
				t.Fatalf("sync: %v, want a dirty ManualMergeError", err)
			}
			if strings.Join(m.Files, ",") != tc.file {
				t.Errorf("files in the way: %q, want %q", m.Files, tc.file)
			}
			if got := gitIn(t, host, "rev-parse", "HEAD"); got != head {
				t.Errorf("HEAD moved")
			}
			after := snapshot(t, host)
			for k, v := range before {
				if !strings.HasPrefix(k, ".git/") && after[k] != v {
					t.Errorf("host file %s changed", k)
				}
			}
		})
	}
}

func TestSyncCarriesUnrelatedHostEdits(t *testing.T) {
	host, ws := newPair(t)
	write(t, filepath.Join(host, "src", "main.go"), "package main // my edit\n")
	write(t, filepath.Join(host, "notes.txt"), "mine\n")
	c := commit(t, ws, "agent", map[string]string{"agent.txt": "a\n"})
	mustSync(t, opts(host, ws))
	if got := gitIn(t, host, "rev-parse", "HEAD"); got != c {
		t.Fatalf("HEAD = %s, want %s", got, c)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "src", "main.go")); string(b) != "package main // my edit\n" {
		t.Error("unrelated host edit lost")
	}
	if b, _ := os.ReadFile(filepath.Join(host, "notes.txt")); string(b) != "mine\n" {
		t.Error("untracked host file lost")
	}
}

func TestSyncDetachedHostHead(t *testing.T) {
	host, ws := newPair(t)
	gitIn(t, host, "checkout", "-q", "--detach")
	head := gitIn(t, host, "rev-parse", "HEAD")
	c := commit(t, ws, "agent", map[string]string{"agent.txt": "a\n"})
	_, err := Sync(context.Background(), opts(host, ws))
	var m *ManualMergeError
	if !errors.As(err, &m) || m.Kind != KindDetached {
		t.Fatalf("sync: %v, want a detached ManualMergeError", err)
	}
	if got := gitIn(t, host, "rev-parse", "HEAD"); got != head {
		t.Error("detached HEAD moved")
	}
	if got := gitIn(t, host, "rev-parse", "main"); got == c {
		t.Error("main moved")
	}
	if got := gitIn(t, host, "rev-parse", "refs/remotes/keystone/demo/main"); got != c {
		t.Errorf("tracking ref = %s, want %s", got, c)
	}
}

func TestSyncNewSandboxBranch(t *testing.T) {
	host, ws := newPair(t)
	main := gitIn(t, host, "rev-parse", "main")
	gitIn(t, ws, "checkout", "-q", "-b", "agent/fix")
	c := commit(t, ws, "fix", map[string]string{".github/workflows/ci.yml": "on: push\n"})
	r := mustSync(t, opts(host, ws))
	if r.Result != ResultFetched {
		t.Fatalf("result %q, want %q", r.Result, ResultFetched)
	}
	if got := gitIn(t, host, "rev-parse", "refs/remotes/keystone/demo/agent/fix"); got != c {
		t.Errorf("new branch ref = %s, want %s", got, c)
	}
	if got := gitIn(t, host, "rev-parse", "main"); got != main {
		t.Error("host main moved")
	}
	if len(r.Review) != 1 || r.Review[0].Path != ".github/workflows/ci.yml" || r.Review[0].Branch != "agent/fix" {
		t.Errorf("review: %+v", r.Review)
	}
	if _, err := Sync(context.Background(), opts(host, ws)); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("second sync: %v, want ErrNoChanges", err)
	}
}

func TestSyncRewrittenSandboxBranch(t *testing.T) {
	host, ws := newPair(t)
	gitIn(t, ws, "checkout", "-q", "-b", "topic")
	old := commit(t, ws, "first try", map[string]string{"t.txt": "1\n"})
	mustSync(t, opts(host, ws))
	gitIn(t, ws, "reset", "-q", "--hard", "HEAD~1")
	nu := commit(t, ws, "second try", map[string]string{"t.txt": "2\n"})
	r := mustSync(t, opts(host, ws))
	if len(r.Refs) != 1 || !r.Refs[0].Forced || r.Refs[0].Old != old || r.Refs[0].New != nu {
		t.Fatalf("refs: %+v", r.Refs)
	}
	// Nothing is lost: the old tip stays in the ref's reflog and in the object store.
	if log := gitIn(t, host, "reflog", "show", "--format=%H", "refs/remotes/keystone/demo/topic"); !strings.Contains(log, old) {
		t.Errorf("reflog of the tracking ref lacks the old tip %s:\n%s", old, log)
	}
	gitIn(t, host, "cat-file", "-e", old)
}

func TestSyncRewrittenCurrentBranchIsDiverged(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "one", map[string]string{"a.txt": "1\n"})
	mustSync(t, opts(host, ws))
	synced := gitIn(t, host, "rev-parse", "main")
	gitIn(t, ws, "commit", "-q", "--amend", "-m", "one, amended")
	_, err := Sync(context.Background(), opts(host, ws))
	if !errors.Is(err, ErrManualMerge) {
		t.Fatalf("sync: %v, want ErrManualMerge", err)
	}
	if got := gitIn(t, host, "rev-parse", "main"); got != synced {
		t.Error("host main moved")
	}
}

func TestSyncEmptyRepositories(t *testing.T) {
	host := filepath.Join(t.TempDir(), "empty")
	gitIn(t, t.TempDir(), "init", "-q", "-b", "main", host)
	ws := filepath.Join(t.TempDir(), "ws")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	if _, err := Sync(context.Background(), opts(host, ws)); !errors.Is(err, ErrNoChanges) {
		t.Fatalf("empty sync: %v, want ErrNoChanges", err)
	}
	write(t, filepath.Join(host, "mine.txt"), "untracked on the host\n")
	c := commit(t, ws, "first", map[string]string{"a.txt": "a\n"})
	r := mustSync(t, opts(host, ws))
	if r.Result != ResultFastForwarded || len(r.Commits) != 1 {
		t.Fatalf("report: %+v", r)
	}
	if got := gitIn(t, host, "rev-parse", "main"); got != c {
		t.Errorf("main = %s, want %s", got, c)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "mine.txt")); string(b) != "untracked on the host\n" {
		t.Error("untracked host file lost")
	}
}

func TestSyncListsUncommittedSandboxFiles(t *testing.T) {
	host, ws := newPair(t)
	write(t, filepath.Join(ws, "scratch.txt"), "wip\n")
	write(t, filepath.Join(ws, "README.md"), "edited\n")
	r, err := Sync(context.Background(), opts(host, ws))
	if !errors.Is(err, ErrNoChanges) {
		t.Fatalf("sync: %v", err)
	}
	got := map[string]string{}
	for _, u := range r.Uncommitted {
		got[u.Path] = u.Status
	}
	if got["scratch.txt"] != "??" || got["README.md"] != " M" || len(got) != 2 {
		t.Errorf("uncommitted: %+v", r.Uncommitted)
	}
	if _, err := os.Stat(filepath.Join(host, "scratch.txt")); err == nil {
		t.Error("uncommitted file was transferred")
	}
}

func TestSyncNamesReviewPaths(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "sneaky", map[string]string{"flake.nix": "{}\n", ".envrc": "use flake\n",
		"sub/Makefile": "all:\n", ".claude/settings.json": "{}\n", "ok.txt": "fine\n"})
	os.Symlink("/etc/passwd", filepath.Join(ws, "link"))
	gitIn(t, ws, "add", "link")
	gitIn(t, ws, "commit", "-q", "-m", "link")
	o := opts(host, ws)
	o.DryRun = true
	r := mustSync(t, o)
	var paths []string
	for _, p := range r.Review {
		paths = append(paths, p.Path)
	}
	want := ".claude/settings.json .envrc flake.nix link sub/Makefile"
	if strings.Join(paths, " ") != want {
		t.Errorf("review paths %q, want %q", paths, want)
	}
}

// A sandbox can set its clock at will: commits dated before the host's must
// still fast-forward, and dates in the future must not hide host commits.
func TestSyncIgnoresCommitDates(t *testing.T) {
	host, ws := newPair(t)
	t.Setenv("GIT_COMMITTER_DATE", "2001-01-01T00:00:00Z")
	var c string
	for i := 0; i < 8; i++ {
		c = commit(t, ws, fmt.Sprint("old ", i), map[string]string{"old.txt": fmt.Sprint(i)})
	}
	r := mustSync(t, opts(host, ws))
	if r.Result != ResultFastForwarded || len(r.Commits) != 8 || gitIn(t, host, "rev-parse", "main") != c {
		t.Fatalf("past-dated commits: %+v", r)
	}
	t.Setenv("GIT_COMMITTER_DATE", "2001-01-02T00:00:00Z")
	commit(t, host, "host, dated later than the sandbox's next commits", map[string]string{"h.txt": "h"})
	t.Setenv("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z")
	commit(t, ws, "even older", map[string]string{"older.txt": "x"})
	if _, err := Sync(context.Background(), opts(host, ws)); !errors.Is(err, ErrManualMerge) {
		t.Fatalf("diverged with skewed dates: %v, want ErrManualMerge", err)
	}
}

func TestSyncCountsLinesLikeGit(t *testing.T) {
	host, ws := newPair(t)
	commit(t, host, "more", map[string]string{"doomed.txt": "1\n2\n3\n", "edit.txt": "a\nb\nc\nd\n"})
	gitIn(t, ws, "pull", "-q", host, "main") // fixture only: the trusted CLI on test repositories
	os.Remove(filepath.Join(ws, "doomed.txt"))
	commit(t, ws, "agent", map[string]string{"edit.txt": "a\nB\nc\nd\ne", "bin.dat": "\x00\x01\x02\n"})
	o := opts(host, ws)
	o.DryRun = true
	r := mustSync(t, o)
	want := gitIn(t, ws, "diff", "--shortstat", "HEAD~1", "HEAD")
	got := fmt.Sprintf("%d files changed, %d insertions(+), %d deletions(-)", r.FilesChanged, r.Insertions, r.Deletions)
	if got != want {
		t.Errorf("stats %q, git says %q", got, want)
	}
}

// Many commits rewrite the same trees: they travel as deltas, which the host's
// git must read back exactly.
func TestSyncPackWithTreeDeltasIsValid(t *testing.T) {
	host, ws := newPair(t)
	var c, log string
	for i := 0; i < 30; i++ {
		log += fmt.Sprintf("line %d of a file that grows with every commit\n", i)
		c = commit(t, ws, fmt.Sprint("step ", i), map[string]string{fmt.Sprintf("src/gen/f%02d.txt", i): fmt.Sprint(i, "\n"), "LOG": log})
	}
	mustSync(t, opts(host, ws))
	gitIn(t, host, "fsck", "--strict", "--no-dangling", "--full")
	if got := gitIn(t, host, "rev-parse", "main"); got != c {
		t.Fatalf("main = %s, want %s", got, c)
	}
	packs, _ := filepath.Glob(filepath.Join(host, ".git", "objects", "pack", "pack-*.idx"))
	deltas := 0
	for _, p := range packs {
		for _, line := range strings.Split(gitIn(t, host, "verify-pack", "-v", p), "\n") {
			if f := strings.Fields(line); len(f) == 7 && (f[1] == "tree" || f[1] == "blob") {
				deltas++
			}
		}
	}
	if deltas < 60 {
		t.Errorf("%d trees and blobs stored as deltas, want at least 60", deltas)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "LOG")); string(b) != log {
		t.Error("the host's LOG differs from the sandbox's")
	}
	if a, b := gitIn(t, host, "ls-tree", "-r", "main"), gitIn(t, ws, "ls-tree", "-r", "main"); a != b {
		t.Error("trees differ between host and workspace")
	}
}

// The sandbox deletes a synced branch and makes one named inside it: the old
// tracking ref is pruned and said so, and syncs go on (issue 14 item 8).
func TestSyncPrunesRefsOfDeletedBranches(t *testing.T) {
	host, ws := newPair(t)
	gitIn(t, ws, "checkout", "-q", "-b", "feature")
	old := commit(t, ws, "feature work", map[string]string{"f.txt": "f\n"})
	mustSync(t, opts(host, ws))
	gitIn(t, ws, "checkout", "-q", "main")
	gitIn(t, ws, "branch", "-q", "-D", "feature")
	gitIn(t, ws, "checkout", "-q", "-b", "feature/x")
	nu := commit(t, ws, "more", map[string]string{"x.txt": "x\n"})
	for i := 0; i < 2; i++ {
		r, err := Sync(context.Background(), opts(host, ws))
		if i == 1 {
			if !errors.Is(err, ErrNoChanges) {
				t.Fatalf("second sync: %v, want ErrNoChanges", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		var pruned []RefUpdate
		for _, u := range r.Refs {
			if u.Deleted {
				pruned = append(pruned, u)
			}
		}
		if len(pruned) != 1 || pruned[0].Ref != "refs/remotes/keystone/demo/feature" || pruned[0].Old != old {
			t.Fatalf("pruned: %+v", pruned)
		}
		if out := render(r); !strings.Contains(out, "Branches deleted in the sandbox") || !strings.Contains(out, "refs/remotes/keystone/demo/feature (was "+old[:7]) {
			t.Errorf("output does not say what was pruned:\n%s", out)
		}
	}
	if got := gitIn(t, host, "rev-parse", "refs/remotes/keystone/demo/feature/x"); got != nu {
		t.Errorf("feature/x = %s, want %s", got, nu)
	}
	gitIn(t, host, "cat-file", "-e", old) // the pruned commit stays until gc
}

// A SHA-256 workspace is refused with a message that says so (issue 14 item 12).
func TestSyncRefusesSHA256Workspaces(t *testing.T) {
	host := newHost(t)
	ws := filepath.Join(t.TempDir(), "ws")
	gitIn(t, t.TempDir(), "init", "-q", "--object-format=sha256", "-b", "main", ws)
	commit(t, ws, "sha256", map[string]string{"a.txt": "a\n"})
	_, err := Sync(context.Background(), opts(host, ws))
	if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "SHA-1 repositories only") {
		t.Fatalf("sync: %v, want a refusal naming SHA-1", err)
	}
	if _, err := Pending(context.Background(), opts(host, ws)); err == nil || !strings.Contains(err.Error(), "SHA-1") {
		t.Fatalf("pending: %v, want a refusal naming SHA-1", err)
	}
}

// Pending counts what a sync would bring, exactly, without the sync's work.
func TestPendingCountsWhatASyncWouldBring(t *testing.T) {
	host, ws := newPair(t)
	pending := func() int {
		t.Helper()
		n, err := Pending(context.Background(), opts(host, ws))
		if err != nil {
			t.Fatal(err)
		}
		o := opts(host, ws)
		o.DryRun = true
		r, err := Sync(context.Background(), o)
		if r != nil && len(r.Commits) != n {
			t.Errorf("pending %d, a dry run lists %d commits", n, len(r.Commits))
		}
		return n
	}
	if n := pending(); n != 0 {
		t.Fatalf("fresh clone: %d pending", n)
	}
	for i := 0; i < 3; i++ {
		commit(t, ws, fmt.Sprint("c", i), map[string]string{"c.txt": fmt.Sprint(i)})
	}
	gitIn(t, ws, "checkout", "-q", "-b", "side", "HEAD~2")
	commit(t, ws, "side", map[string]string{"s.txt": "s"})
	gitIn(t, ws, "checkout", "-q", "main")
	gitIn(t, ws, "merge", "-q", "--no-edit", "side")
	if n := pending(); n != 5 {
		t.Fatalf("3 commits, a side branch and a merge: %d pending, want 5", n)
	}
	// The host diverges: the commits arrive in the tracking ref only, and stay pending.
	commit(t, host, "host", map[string]string{"h.txt": "h"})
	Sync(context.Background(), opts(host, ws))
	if n := pending(); n != 5 {
		t.Fatalf("after a paused sync: %d pending, want 5", n)
	}
	gitIn(t, host, "merge", "-q", "--no-edit", "refs/remotes/keystone/demo/main")
	if n := pending(); n != 0 {
		t.Fatalf("after the user's merge: %d pending", n)
	}
}

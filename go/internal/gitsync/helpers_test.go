package gitsync

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// realGit is the git binary found when the tests start; fixtures use it on the
// trusted side only, and it is pinned through KEYSTONE_AGENT_GIT so that a fake
// git placed first on PATH by a test can never be the one Sync runs.
var realGit = func() string {
	p, err := exec.LookPath("git")
	if err != nil {
		return ""
	}
	p, _ = filepath.Abs(p)
	return p
}()

func TestMain(m *testing.M) {
	if realGit == "" {
		println("gitsync tests need git on PATH to build fixtures")
		os.Exit(1)
	}
	os.Setenv(GitEnv, realGit)
	// Fixtures must not depend on the user's git configuration.
	home, _ := os.MkdirTemp("", "gitsync-home")
	os.Setenv("HOME", home)
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for k, v := range map[string]string{"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
		"GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"} {
		os.Setenv(k, v)
	}
	if f := os.Getenv("GITSYNC_TEST_CHILD"); f != "" { // a sync to kill: host and workspace
		host, ws, _ := strings.Cut(f, "\n")
		if os.Getenv("GITSYNC_TEST_SPLIT") != "" {
			splitFrom = 0
		}
		_, err := Sync(context.Background(), Options{Name: "demo", HostRepo: host, Workspace: ws})
		if err != nil {
			println(err.Error())
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

// gitIn runs the real git in dir for building fixtures and fails the test on error.
func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(realGit, append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// commit writes files (name → content) in repo and commits them.
func commit(t testing.TB, repo, msg string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		write(t, filepath.Join(repo, name), content)
	}
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "--allow-empty", "-m", msg)
	return gitIn(t, repo, "rev-parse", "HEAD")
}

// newHost makes a host repository on branch main with one commit.
func newHost(t testing.TB) string {
	t.Helper()
	host := filepath.Join(t.TempDir(), "project")
	gitIn(t, t.TempDir(), "init", "-q", "-b", "main", host)
	commit(t, host, "initial", map[string]string{"README.md": "hello\n", "src/main.go": "package main\n"})
	return host
}

// newPair makes a host repository and its workspace clone.
func newPair(t testing.TB) (host, ws string) {
	t.Helper()
	host = newHost(t)
	ws = filepath.Join(t.TempDir(), "workspace")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	return host, ws
}

func opts(host, ws string) Options {
	return Options{Name: "demo", HostRepo: host, Workspace: ws}
}

// snapshot records every file under dir (path → content) except the index,
// which git may rewrite without changing anything.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".git/index" {
			return nil
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			m[rel] = "link:" + l
			return nil
		}
		b, _ := os.ReadFile(p)
		m[rel] = string(b)
		return nil
	})
	return m
}

func diffSnapshots(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return d
}

// plainDirs agrees with git rev-parse wherever it answers, and leaves the
// layouts it does not know to git.
func TestHostDirsWithoutGit(t *testing.T) {
	host := newHost(t)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(host, link)
	wt := filepath.Join(t.TempDir(), "wt")
	gitIn(t, host, "worktree", "add", "-q", "-b", "other", wt)
	for _, dir := range []string{host, link, wt, filepath.Join(host, "src")} {
		g := hostGit{bin: realGit, dir: dir}
		want, err := g.dirs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := gitIn(t, dir, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-dir", "--git-common-dir")
		if got := want.top + "\n" + want.gitDir + "\n" + want.common; got != out {
			t.Errorf("%s: %q, git says %q", dir, got, out)
		}
		_, plain := plainDirs(dir)
		if plain != (dir == host || dir == link) {
			t.Errorf("%s: resolved without git: %v", dir, plain)
		}
	}
}

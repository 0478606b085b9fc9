package syncwatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/statedir"
)

var realGit, _ = exec.LookPath("git")

func TestMain(m *testing.M) {
	os.Setenv(gitsync.GitEnv, realGit)
	home, _ := os.MkdirTemp("", "syncwatch-home")
	for k, v := range map[string]string{"HOME": home, "XDG_CONFIG_HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"} {
		os.Setenv(k, v)
	}
	if os.Getenv("SYNCWATCH_CHILD") != "" {
		os.Exit(child())
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

// child is the watcher process that TestWatchSurvivesKills kills.
func child() int {
	f := strings.Split(os.Getenv("SYNCWATCH_CHILD"), "\n")
	err := Watch(context.Background(), Options{
		Sync: gitsync.Options{Name: "demo", HostRepo: f[0], Workspace: f[1]}, StateDir: f[2],
		Mode: ModeAutoCommit, Interval: 10 * time.Millisecond}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(realGit, append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func commit(t testing.TB, repo, file, content string) string {
	t.Helper()
	p := filepath.Join(repo, file)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", "edit "+file)
	return gitIn(t, repo, "rev-parse", "HEAD")
}

type fixture struct{ host, ws, state string }

func newFixture(t *testing.T) fixture {
	base := t.TempDir()
	f := fixture{filepath.Join(base, "project"), filepath.Join(base, "ws"), filepath.Join(base, "state")}
	gitIn(t, base, "init", "-q", "-b", "main", f.host)
	commit(t, f.host, "README.md", "hello\n")
	if err := gitsync.Clone(context.Background(), f.host, f.ws); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(f.state, 0o755)
	return f
}

func (f fixture) options(mode string) Options {
	return Options{Sync: gitsync.Options{Name: "demo", HostRepo: f.host, Workspace: f.ws}, StateDir: f.state,
		Mode: mode, Idle: 400 * time.Millisecond, Interval: 20 * time.Millisecond}
}

// await polls cond until it holds or the deadline passes.
func await(t *testing.T, what string, within time.Duration, cond func() (string, bool)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, ok := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %s after %v", what, got, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hostAt(t *testing.T, repo, ref, want string) func() (string, bool) {
	return func() (string, bool) {
		out, _ := exec.Command(realGit, "-C", repo, "rev-parse", ref).Output()
		got := strings.TrimSpace(string(out))
		return got, got == want
	}
}

func startWatch(t *testing.T, o Options) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Watch(ctx, o, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestWatchAutoCommitSyncsEachCommit(t *testing.T) {
	f := newFixture(t)
	startWatch(t, f.options(ModeAutoCommit))
	for i := 0; i < 3; i++ {
		c := commit(t, f.ws, "a.txt", fmt.Sprintf("%d\n", i))
		await(t, "host main", 2*time.Second, hostAt(t, f.host, "main", c))
	}
	await(t, "status", time.Second, func() (string, bool) {
		st, _ := ReadStatus(f.state)
		return fmt.Sprintf("%+v", st), st.LastResult == gitsync.ResultFastForwarded && st.Mode == ModeAutoCommit && !st.Paused
	})
}

func TestWatchAutoIdleWaitsForQuiet(t *testing.T) {
	f := newFixture(t)
	o := f.options(ModeAutoIdle)
	startWatch(t, o)
	c := commit(t, f.ws, "a.txt", "work\n")
	// Keep the workspace busy for three idle periods: nothing may sync.
	busyUntil := time.Now().Add(3 * o.Idle)
	var quiet time.Time
	for i := 0; time.Now().Before(busyUntil); i++ {
		os.WriteFile(filepath.Join(f.ws, "scratch.txt"), []byte(fmt.Sprint(i)), 0o644)
		quiet = time.Now()
		time.Sleep(o.Idle / 4)
		if got, _ := hostAt(t, f.host, "main", c)(); got == c {
			t.Fatal("synced while the workspace was busy")
		}
	}
	await(t, "host main after the workspace went quiet", o.Idle+time.Second, hostAt(t, f.host, "main", c))
	if d := time.Since(quiet); d < o.Idle {
		t.Errorf("synced %v after the last write, before the idle time %v", d, o.Idle)
	}
}

func TestWatchKeepsFetchingWhenDiverged(t *testing.T) {
	f := newFixture(t)
	mine := commit(t, f.host, "host.txt", "mine\n")
	startWatch(t, f.options(ModeAutoCommit))
	for i := 0; i < 2; i++ {
		c := commit(t, f.ws, "a.txt", fmt.Sprintf("%d\n", i))
		await(t, "tracking ref", 2*time.Second, hostAt(t, f.host, "refs/remotes/keystone/demo/main", c))
	}
	await(t, "paused status", time.Second, func() (string, bool) {
		st, _ := ReadStatus(f.state)
		return fmt.Sprintf("%+v", st), st.Paused && st.PendingCommits == 2 && len(st.Commands) > 0
	})
	if got := gitIn(t, f.host, "rev-parse", "main"); got != mine {
		t.Fatalf("host main moved to %s", got)
	}
	// The user takes the sandbox's work; the watcher resumes by itself.
	gitIn(t, f.host, "reset", "-q", "--hard", "refs/remotes/keystone/demo/main")
	c := commit(t, f.ws, "b.txt", "after\n")
	await(t, "host main after resuming", 2*time.Second, hostAt(t, f.host, "main", c))
	await(t, "resumed status", time.Second, func() (string, bool) {
		st, _ := ReadStatus(f.state)
		return fmt.Sprintf("%+v", st), !st.Paused && st.PendingCommits == 0
	})
}

func TestWatchReturnsWhenSandboxStops(t *testing.T) {
	f := newFixture(t)
	o := f.options(ModeAutoIdle)
	o.Idle = time.Hour // only the final sync can bring the commit
	c := commit(t, f.ws, "a.txt", "last words\n")
	o.Alive = func() bool { return false }
	if err := Watch(context.Background(), o, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok := hostAt(t, f.host, "main", c)(); !ok {
		t.Fatalf("host main = %s, want the final sync's %s", got, c)
	}
}

// TestWatchSurvivesKills kills the watcher process with SIGKILL at random moments
// while commits keep coming, restarts it, and checks after each kill that the
// host repository is consistent; at the end everything has arrived.
func TestWatchSurvivesKills(t *testing.T) {
	f := newFixture(t)
	self, _ := os.Executable()
	rng := rand.New(rand.NewSource(1))
	blob := strings.Repeat("x", 1<<20)
	var last string
	for round := 0; round < 8; round++ {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "SYNCWATCH_CHILD="+f.host+"\n"+f.ws+"\n"+f.state)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			last = commit(t, f.ws, fmt.Sprintf("f%d-%d.bin", round, i), blob+fmt.Sprint(rng.Int()))
		}
		time.Sleep(time.Duration(rng.Intn(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		time.Sleep(50 * time.Millisecond) // a git child of the killed watcher finishes on its own
		gitIn(t, f.host, "fsck", "--no-dangling", "--no-progress")
		for _, ref := range []string{"main", "refs/remotes/keystone/demo/main"} {
			if h, err := exec.Command(realGit, "-C", f.host, "rev-parse", "--verify", "-q", ref).Output(); err == nil {
				gitIn(t, f.ws, "merge-base", "--is-ancestor", strings.TrimSpace(string(h)), last)
			}
		}
		if st, err := ReadStatus(f.state); err != nil {
			t.Fatalf("status after kill %d: %v (%+v)", round, err, st)
		}
	}
	if _, err := RunOnce(context.Background(), f.state, gitsync.Options{Name: "demo", HostRepo: f.host, Workspace: f.ws}); err != nil && !errors.Is(err, gitsync.ErrNoChanges) {
		t.Fatal(err)
	}
	if got := gitIn(t, f.host, "rev-parse", "main"); got != last {
		t.Fatalf("host main = %s, want %s", got, last)
	}
	if out := gitIn(t, f.host, "status", "--porcelain"); out != "" {
		t.Errorf("host working tree not clean:\n%s", out)
	}
	// What the killed syncs left behind was removed by the last one.
	for _, pattern := range []string{"objects/keystone-incoming-*", "objects/pack/tmp_*", "objects/pack/*.keep"} {
		if left, _ := filepath.Glob(filepath.Join(f.host, ".git", pattern)); len(left) > 0 {
			t.Errorf("left behind in the host repository: %v", left)
		}
	}
}

// A sync whose outcome cannot be recorded still happened: it succeeds, with a
// warning on its report (issue 14 item 7).
func TestRunOnceWarnsWhenTheStatusCannotBeWritten(t *testing.T) {
	f := newFixture(t)
	c := commit(t, f.ws, "a.txt", "a\n")
	os.MkdirAll(filepath.Join(f.state, statedir.SyncStatus, "blocked"), 0o755) // rename over a full directory fails
	rep, err := RunOnce(context.Background(), f.state, gitsync.Options{Name: "demo", HostRepo: f.host, Workspace: f.ws})
	if err != nil {
		t.Fatalf("sync: %v, want success with a warning", err)
	}
	if rep.Result != gitsync.ResultFastForwarded || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "could not be recorded") {
		t.Fatalf("report: %s, warnings %q", rep.Result, rep.Warnings)
	}
	if got := gitIn(t, f.host, "rev-parse", "main"); got != c {
		t.Fatalf("host main = %s, want %s", got, c)
	}
}

// A workspace that crashed the watcher before (a pack index with an offset
// outside its pack) is refused and recorded; the watcher carries on and syncs
// once it is fixed.
func TestWatchSurvivesAHostileWorkspace(t *testing.T) {
	f := newFixture(t)
	startWatch(t, f.options(ModeAutoCommit))
	// A pack of one object nothing needs, so that the sandbox's own git never
	// reads it, with its index's only offset pointing into the large-offset
	// table, at an entry that does not exist.
	junk := gitIn(t, f.ws, "hash-object", "-w", "--stdin", "--path=junk")
	cmd := exec.Command(realGit, "-C", f.ws, "pack-objects", "-q", ".git/objects/pack/pack")
	cmd.Stdin = strings.NewReader(junk + "\n")
	name, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(f.ws, ".git", "objects", "pack", "pack-"+strings.TrimSpace(string(name))+".idx")
	b, _ := os.ReadFile(idx)
	copy(b[8+1024+1*24:], []byte{0x80, 0, 0, 9})
	os.Chmod(idx, 0o644)
	os.WriteFile(idx, b, 0o644)
	commit(t, f.ws, "b.txt", "b\n")
	await(t, "recorded refusal", 3*time.Second, func() (string, bool) {
		st, _ := ReadStatus(f.state)
		return fmt.Sprintf("%+v", st), st.LastResult == "error" && strings.Contains(st.LastError, "rejected")
	})
	os.Remove(idx)
	c := commit(t, f.ws, "c.txt", "c\n")
	await(t, "host main after the fix", 3*time.Second, hostAt(t, f.host, "main", c))
}

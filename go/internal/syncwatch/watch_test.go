package syncwatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/gitsync/gitcraft"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv/smallfs"
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
		Mode: mode, Idle: 30 * time.Second, Interval: time.Second}
}

// fakeClock is the watchers' time in these tests: it moves only when the
// test says, and Tick returns once the watcher has finished what the tick
// made due, so a loaded machine cannot reorder anything.
type fakeClock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	waiters []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	c := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeTimer{c.now.Add(d), ch})
	c.cond.Broadcast()
	return ch
}

// Tick waits until the watcher waits, moves the time on by d, and waits until
// the watcher has done what came due and waits again.
func (c *fakeClock) Tick(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waiters) == 0 {
		c.cond.Wait()
	}
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = keep
	for len(c.waiters) == 0 {
		c.cond.Wait()
	}
}

func hostAt(t *testing.T, repo, ref string) string {
	out, _ := exec.Command(realGit, "-C", repo, "rev-parse", ref).Output()
	return strings.TrimSpace(string(out))
}

// startWatch runs a watcher on a fake clock until the test ends.
func startWatch(t *testing.T, o Options) *fakeClock {
	clock := newFakeClock()
	o.Clock = clock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Watch(ctx, o, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	clock.Tick(0) // the first look is done
	return clock
}

func TestWatchAutoCommitSyncsEachCommit(t *testing.T) {
	f := newFixture(t)
	o := f.options(ModeAutoCommit)
	clock := startWatch(t, o)
	for i := 0; i < 3; i++ {
		c := commit(t, f.ws, "a.txt", fmt.Sprintf("%d\n", i))
		clock.Tick(o.Interval)
		if got := hostAt(t, f.host, "main"); got != c {
			t.Fatalf("host main after commit %d and one look: %s; want %s", i, got, c)
		}
	}
	st, _ := ReadStatus(f.state)
	if st.LastResult != gitsync.ResultFastForwarded || st.Mode != ModeAutoCommit || st.Paused {
		t.Fatalf("status %+v; want fast-forwarded by auto-commit, not paused", st)
	}
}

// issue 12.6: auto-idle syncs once the workspace has been quiet for Idle,
// never while it is busy, whatever the machine's load (the clock is the test's).
func TestWatchAutoIdleWaitsForQuiet(t *testing.T) {
	f := newFixture(t)
	o := f.options(ModeAutoIdle)
	clock := startWatch(t, o)
	c := commit(t, f.ws, "a.txt", "work\n")
	// Busy for three idle periods: a write before every look.
	for i := 0; i < 12; i++ {
		os.WriteFile(filepath.Join(f.ws, "scratch.txt"), []byte(strings.Repeat("x", i+1)), 0o644)
		clock.Tick(o.Idle / 4)
		if hostAt(t, f.host, "main") == c {
			t.Fatalf("synced while the workspace was busy (look %d)", i)
		}
	}
	// Quiet: the first look sees the last write; Idle later it syncs, not before.
	for elapsed := o.Idle / 4; elapsed < o.Idle; elapsed += o.Idle / 4 {
		clock.Tick(o.Idle / 4)
		if hostAt(t, f.host, "main") == c {
			t.Fatalf("synced %v after the last write seen; the idle time is %v", elapsed, o.Idle)
		}
	}
	clock.Tick(o.Idle / 4)
	if got := hostAt(t, f.host, "main"); got != c {
		t.Fatalf("host main after %v quiet: %s; want %s", o.Idle, got, c)
	}
}

func TestWatchKeepsFetchingWhenDiverged(t *testing.T) {
	f := newFixture(t)
	mine := commit(t, f.host, "host.txt", "mine\n")
	o := f.options(ModeAutoCommit)
	clock := startWatch(t, o)
	for i := 0; i < 2; i++ {
		c := commit(t, f.ws, "a.txt", fmt.Sprintf("%d\n", i))
		clock.Tick(o.Interval)
		if got := hostAt(t, f.host, "refs/remotes/keystone/demo/main"); got != c {
			t.Fatalf("tracking ref after commit %d: %s; want %s", i, got, c)
		}
	}
	if st, _ := ReadStatus(f.state); !st.Paused || st.PendingCommits != 2 || len(st.Commands) == 0 {
		t.Fatalf("status %+v; want paused with 2 pending commits and the commands", st)
	}
	if got := gitIn(t, f.host, "rev-parse", "main"); got != mine {
		t.Fatalf("host main moved to %s", got)
	}
	// The user takes the sandbox's work; the watcher resumes by itself.
	gitIn(t, f.host, "reset", "-q", "--hard", "refs/remotes/keystone/demo/main")
	c := commit(t, f.ws, "b.txt", "after\n")
	clock.Tick(o.Interval)
	if got := hostAt(t, f.host, "main"); got != c {
		t.Fatalf("host main after resuming: %s; want %s", got, c)
	}
	if st, _ := ReadStatus(f.state); st.Paused || st.PendingCommits != 0 {
		t.Fatalf("status %+v; want resumed", st)
	}
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
	if got := hostAt(t, f.host, "main"); got != c {
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
		time.Sleep(time.Duration(rng.Intn(150)) * time.Millisecond) // a random moment to kill at
		killWatcher(t, cmd)
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

// Workspaces that crashed or exhausted the watcher before (issue 14 item 5):
// each is refused and recorded, without a panic and without allocating what
// the objects claim; the watcher carries on and syncs once it is fixed.
func TestWatchSurvivesAHostileWorkspace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		craft func(t *testing.T, ws string) (fix func())
	}{
		{"index with an out-of-range 64-bit offset", func(t *testing.T, ws string) func() {
			// A pack of one object nothing needs, so that the sandbox's own
			// git never reads it, with its index's only offset pointing into
			// the large-offset table, at an entry that does not exist.
			junk := gitIn(t, ws, "hash-object", "-w", "--stdin", "--path=junk")
			cmd := exec.Command(realGit, "-C", ws, "pack-objects", "-q", ".git/objects/pack/pack")
			cmd.Stdin = strings.NewReader(junk + "\n")
			name, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			idx := filepath.Join(ws, ".git", "objects", "pack", "pack-"+strings.TrimSpace(string(name))+".idx")
			b, _ := os.ReadFile(idx)
			copy(b[8+1024+1*24:], []byte{0x80, 0, 0, 9})
			os.Chmod(idx, 0o644)
			os.WriteFile(idx, b, 0o644)
			commit(t, ws, "b.txt", "b\n")
			return func() { os.Remove(idx) }
		}},
		{"loose blob claiming 4 GiB", func(t *testing.T, ws string) func() {
			return craftedCommit(t, ws, gitcraft.LooseBomb(t, filepath.Join(ws, ".git"), "blob", 4<<30))
		}},
		{"delta of 20000 copies of 64 KiB", func(t *testing.T, ws string) func() {
			base, bomb := gitcraft.CopyBombPack(t, filepath.Join(ws, ".git"), 20000)
			return craftedCommit(t, ws, base, bomb)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options(ModeAutoCommit)
			clock := startWatch(t, o)
			before := hostAt(t, f.host, "main")
			fix := tc.craft(t, f.ws)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			clock.Tick(o.Interval)
			runtime.ReadMemStats(&m1)
			if st, _ := ReadStatus(f.state); st.LastResult != "error" || !strings.Contains(st.LastError, "rejected") {
				t.Fatalf("status after the hostile commit: %+v; want the refusal recorded", st)
			}
			if got := m1.TotalAlloc - m0.TotalAlloc; got > 400<<20 {
				t.Errorf("allocated %d MiB to refuse it", got>>20)
			}
			if got := hostAt(t, f.host, "main"); got != before {
				t.Fatalf("host main moved to %s", got)
			}
			fix()
			c := commit(t, f.ws, "c.txt", "c\n")
			clock.Tick(o.Interval)
			if got := hostAt(t, f.host, "main"); got != c {
				t.Fatalf("host main after the fix: %s; want %s", got, c)
			}
		})
	}
}

// craftedCommit makes the workspace's main a commit on top of HEAD that adds
// blobs (named bomb0, bomb1, …), which git neither reads nor checks; the fix
// it returns moves main back to HEAD.
func craftedCommit(t *testing.T, ws string, blobs ...plumbing.Hash) (fix func()) {
	t.Helper()
	head := gitIn(t, ws, "rev-parse", "HEAD")
	list := gitIn(t, ws, "ls-tree", "HEAD") + "\n"
	for i, b := range blobs {
		list += fmt.Sprintf("100644 blob %s\tbomb%d\n", b, i)
	}
	cmd := exec.Command(realGit, "-C", ws, "mktree", "--missing")
	cmd.Stdin = strings.NewReader(list)
	tree, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	c := gitIn(t, ws, "commit-tree", strings.TrimSpace(string(tree)), "-p", head, "-m", "crafted")
	gitIn(t, ws, "update-ref", "refs/heads/main", c)
	return func() { gitIn(t, ws, "update-ref", "refs/heads/main", head) }
}

// killWatcher kills the watcher as kill -9 would and waits until the git it
// was running, which is not killed with it, has finished on its own. The
// watcher is stopped first, so it cannot start another git in between.
func killWatcher(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	var kids []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for _, k := range kids {
		deadline := time.Now().Add(time.Minute)
		for running(k) {
			if time.Now().After(deadline) {
				t.Fatalf("git %s of the killed watcher still runs after a minute", k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// running: the process exists and is not a zombie waiting for its reaper.
func running(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// A sync that fails for the host's reasons (its disk full) is tried again
// after the idle period without a new commit, unlike a hostile workspace:
// once there is room, the commit arrives by itself.
func TestWatchRetriesWhenTheHostDiskIsFull(t *testing.T) {
	fs := smallfs.Mount(t, 32<<20)
	f := fixture{filepath.Join(fs, "project"), filepath.Join(t.TempDir(), "ws"), t.TempDir()}
	gitIn(t, fs, "init", "-q", "-b", "main", f.host)
	commit(t, f.host, "README.md", "hello\n")
	if err := gitsync.Clone(context.Background(), f.host, f.ws); err != nil {
		t.Fatal(err)
	}
	o := f.options(ModeAutoCommit)
	clock := startWatch(t, o)
	big := make([]byte, 12<<20)
	rand.New(rand.NewSource(1)).Read(big)
	c := commit(t, f.ws, "big.bin", string(big))
	filler := filepath.Join(fs, "filler")
	if err := os.WriteFile(filler, make([]byte, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Tick(o.Interval)
	if st, _ := ReadStatus(f.state); st.LastResult != "error" || !strings.Contains(st.LastError, "No space left") {
		t.Fatalf("status on a full disk: %+v; want the host's error", st)
	}
	os.Remove(filler)
	clock.Tick(o.Idle)
	if got := hostAt(t, f.host, "main"); got != c {
		t.Fatalf("host main after room was made: %s; want %s (retried without a new commit)", got, c)
	}
}

// waitingFor is how long the watcher waits until its next look.
func (c *fakeClock) waitingFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Duration
	for i, w := range c.waiters {
		if d := w.at.Sub(c.now); i == 0 || d < next {
			next = d
		}
	}
	return next
}

// A workspace of many files (a hostile agent can make millions) is looked
// at less often, in proportion, so that auto-idle's walk of the working tree
// costs the host daemon a bounded share of a core; a small one again every
// interval once they are gone.
func TestWatchLooksAtALargeWorkspaceLessOften(t *testing.T) {
	f := newFixture(t)
	o := f.options(ModeAutoIdle)
	many := filepath.Join(f.ws, "many")
	for d := 0; d < 100; d++ {
		dir := filepath.Join(many, fmt.Sprint(d))
		os.MkdirAll(dir, 0o755)
		for i := 0; i < 1000; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock := startWatch(t, o)
	if got := clock.waitingFor(); got != 2*o.Interval {
		t.Fatalf("next look of a workspace of 100,000+ entries in %v; want %v", got, 2*o.Interval)
	}
	os.RemoveAll(many)
	clock.Tick(2 * o.Interval)
	if got := clock.waitingFor(); got != o.Interval {
		t.Fatalf("next look once the files are gone in %v; want %v", got, o.Interval)
	}
}

// Package testenv gives end-to-end tests a private state directory, real git
// repositories and the Debian test guest, and Await helpers that poll with a
// deadline. It is imported by tests only.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/syncwatch"
	"github.com/keystone-agent/keystone/internal/testguest"
)

var (
	guestOnce sync.Once
	guestDir  string
	guestErr  error
)

// Guest returns the test guest's runner directory, building it once per
// process. Without qemu it skips the test, except under CI, where the guest
// is promised and its absence fails the test.
func Guest(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no VM boots")
	}
	guestOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		guestDir, guestErr = testguest.Build(ctx, testguest.Options{})
	})
	if guestErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the test guest must build under CI: %v", guestErr)
		}
		t.Skipf("the Debian test guest is not available: %v", guestErr)
	}
	return guestDir
}

// RuntimeDir is a private directory shared by every test process of this
// user, standing in for $XDG_RUNTIME_DIR: the tests' sandboxes, each in its
// own state directory, share one port lock there as a user's do.
func RuntimeDir(t testing.TB) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory for the tests' runtime directory: %v", err)
	}
	dir := filepath.Join(base, "keystone", "test-runtime")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Env is a private state directory with the lifecycle API on it.
type Env struct {
	*sandbox.Env
	Work string
}

// New returns an Env rooted in a temporary directory.
func New(t testing.TB) *Env {
	t.Helper()
	work := t.TempDir()
	return NewOn(t, work, filepath.Join(work, "state"))
}

// NewOn returns an Env whose state directory is stateRoot (on a file system
// the test chose, such as a small one that fills up); repositories go in work.
func NewOn(t testing.TB, work, stateRoot string) *Env {
	t.Helper()
	root := statedir.Dir(stateRoot)
	e := &Env{
		Env: &sandbox.Env{
			Root:     root,
			Registry: registry.New(root.Registry(), root.Lock()),
			Declared: filepath.Join(work, "no-declared.json"),
			Home:     filepath.Join(work, "home"),
			Progress: testWriter{t},
			PortLock: filepath.Join(RuntimeDir(t), statedir.PortsLock),
			Keystone: Keystone(t),
		},
		Work: work,
	}
	t.Cleanup(func() { StopAll(t, e.Env) })
	return e
}

// Repo makes a git repository with one commit, using the host's git.
func (e *Env) Repo(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(e.Work, "src", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# "+name+"\n"), 0o644)
	Git(t, dir, "init", "-q", "-b", "main")
	Git(t, dir, "add", "-A")
	Git(t, dir, "commit", "-q", "-m", "initial")
	return dir
}

// Git runs the host's git in dir with a fixed identity and no user config.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Start starts a sandbox for a new repository named name on the test guest,
// with the minimum resources.
func (e *Env) Start(t testing.TB, name string) *sandbox.Sandbox {
	t.Helper()
	spec := sandbox.Spec{Project: e.Repo(t, name), MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: runner.NetworkUser, SyncMode: syncwatch.ModeManual, Runner: Guest(t)}
	sb, err := e.Env.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return sb
}

// Await polls cond until it returns "" or the deadline passes; cond returns
// what it saw ("got X; want Y") for the failure message.
func Await(t testing.TB, what string, d time.Duration, cond func() string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if last = cond(); last == "" {
			return
		}
	}
	t.Fatalf("%s: not within %v: %s", what, d, last)
}

// StopAll stops every sandbox of env that the test left running and, when the
// test failed, prints the ends of their console and host daemon logs.
func StopAll(t testing.TB, e *sandbox.Env) {
	all, _ := e.List()
	for _, sb := range all {
		if t.Failed() {
			for _, f := range []string{statedir.ConsoleLog, statedir.DaemonLog} {
				if log, err := os.ReadFile(sb.Dir.Path(f)); err == nil {
					t.Logf("%s of %s:\n%s", f, sb.Name, tailString(string(log), 40))
				}
			}
		}
		if _, err := e.Stop(sb); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	keystoneOnce sync.Once
	keystoneBin  string
	keystoneErr  error
)

// Keystone returns the keystone program built from this module, once per
// process: what a sandbox.Env runs as its host daemon in tests, whose own
// binary is the test binary.
func Keystone(t testing.TB) string {
	t.Helper()
	keystoneOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keystone-bin-")
		if err != nil {
			keystoneErr = err
			return
		}
		keystoneBin = filepath.Join(dir, "keystone")
		out, err := exec.Command("go", "build", "-o", keystoneBin, "github.com/keystone-agent/keystone/cmd/keystone").CombinedOutput()
		if err != nil {
			keystoneErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if keystoneErr != nil {
		t.Fatalf("cannot build keystone: %v", keystoneErr)
	}
	return keystoneBin
}

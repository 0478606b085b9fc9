package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// issue 14.3: a link planted at the lock's name is refused and its target
// is neither opened for writing nor chmodded.
func TestPortLockRefusesALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("secret\n"), 0o600)
	link := filepath.Join(dir, statedir.PortsLock)
	os.Symlink(victim, link)
	e := &Env{}
	if _, err := e.lockPorts(context.Background(), link, time.Second); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("lockPorts on a link = %v; want a refusal naming the link", err)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Errorf("the link's target has mode %v now", fi.Mode().Perm())
	}
}

// issue 14.3, 14.12: a held lock is waited for, with a message, for a
// bounded time; once released it is taken at once.
func TestPortLockWaitIsBoundedAndSaid(t *testing.T) {
	path := filepath.Join(t.TempDir(), statedir.PortsLock)
	var progress bytes.Buffer
	e := &Env{Progress: &progress}
	unlock, err := e.lockPorts(context.Background(), path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.lockPorts(context.Background(), path, 200*time.Millisecond)
	if !errors.Is(err, ErrPortLockTimeout) || !strings.Contains(err.Error(), path) {
		t.Fatalf("lockPorts on a held lock = %v; want ErrPortLockTimeout naming %s", err, path)
	}
	if !strings.Contains(progress.String(), "Waiting for the port lock") {
		t.Errorf("nothing said while waiting: %q", progress.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.lockPorts(ctx, path, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("lockPorts with a cancelled context = %v; want context.Canceled", err)
	}
	unlock()
	again, err := e.lockPorts(context.Background(), path, time.Millisecond)
	if err != nil {
		t.Fatalf("lockPorts after the release: %v", err)
	}
	again()
}

// A lock file of another user is refused (it could only get there if the
// directory were not private).
func TestPortLockOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file to another user")
	}
	path := filepath.Join(t.TempDir(), statedir.PortsLock)
	os.WriteFile(path, nil, 0o666)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Env{}).lockPorts(context.Background(), path, time.Second); err == nil || !strings.Contains(err.Error(), "another user") {
		t.Fatalf("lockPorts on another user's file = %v; want a refusal", err)
	}
}

// issue 12.5: the lock is in the user's private runtime directory, or the
// state directory; never in a directory other users can write, such as /tmp.
func TestPortLockPathIsPrivate(t *testing.T) {
	root := statedir.Dir(t.TempDir())
	runtime := t.TempDir()
	os.Chmod(runtime, 0o700)
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	if got := PortLockPath(root); got != filepath.Join(runtime, statedir.PortsLock) {
		t.Errorf("with a private runtime dir: %s", got)
	}
	shared := t.TempDir()
	os.Chmod(shared, 0o1777)
	for _, dir := range []string{shared, "", "relative/dir", filepath.Join(runtime, "missing")} {
		t.Setenv("XDG_RUNTIME_DIR", dir)
		if got := PortLockPath(root); got != filepath.Join(string(root), statedir.PortsLock) {
			t.Errorf("XDG_RUNTIME_DIR=%q: lock at %s; want the state directory's", dir, got)
		}
	}
}

// The lock holds against another open of the same file, as another process's would.
func TestPortLockExcludesOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), statedir.PortsLock)
	unlock, err := (&Env{}).lockPorts(context.Background(), path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("a second flock = %v; want EWOULDBLOCK", err)
	}
}

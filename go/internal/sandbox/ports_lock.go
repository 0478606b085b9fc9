package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// The port lock serialises this user's starts from picking a port until the
// hypervisor has bound it, across all of the user's state directories. It
// lives where only the user can create names: $XDG_RUNTIME_DIR (private by
// specification), else the state directory, never a shared directory such
// as /tmp, where another user could create it first and hold it, or plant a
// link there. Starts of different users can still pick the same free port at
// the same moment; the loser's hypervisor fails to bind, and boot retries on
// another port.

// PortLockPath is the user's port lock: in the runtime directory when it is
// set and private, else in the state directory root.
func PortLockPath(root statedir.Dir) string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) && privateDir(dir) {
		return filepath.Join(dir, statedir.PortsLock)
	}
	return filepath.Join(string(root), statedir.PortsLock)
}

// privateDir: a real directory (no link) of this user that no one else can write.
func privateDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o022 == 0
}

// ErrPortLockTimeout says another start held the port lock for the whole wait.
var ErrPortLockTimeout = errors.New("timed out waiting for the port lock")

// lockPorts takes the port lock at path, waiting at most wait (and saying
// so when it has to wait). The file is opened without following a link and used only
// when it is a regular file of this user; it is never chmodded.
func (e *Env) lockPorts(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the port lock's directory: %w", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("refusing the port lock %s: it is a symbolic link", path)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open the port lock %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkOwnFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("refusing the port lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	for try := 0; ; try++ {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("failed to take the port lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w %s: another keystone start held it for %v", ErrPortLockTimeout, path, wait)
		}
		if try == 0 {
			e.progressf("Waiting for the port lock %s: another keystone start holds it (giving up after %v)", path, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkOwnFile refuses anything but a regular file owned by this user.
func checkOwnFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("it is not a regular file (%v)", fi.Mode().Type())
	case !ok || int(st.Uid) != os.Geteuid():
		return errors.New("it belongs to another user")
	}
	return nil
}

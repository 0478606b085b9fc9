package sshmux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Who may use the socket: the file is 0600 in the owner's 0700 state
// directory, and on top of that each side checks the other's uid with
// SO_PEERCRED, so a file mode loosened by accident (or a directory shared by
// a declared sandbox's module) still lets no one else in, and the client never
// sends a session to a process of another user.

// checkPeer returns an error unless the process at the other end of c runs
// with this process's effective uid.
func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("cannot read the peer's credentials: %w", serr)
	}
	if me := os.Geteuid(); int(cred.Uid) != me {
		return fmt.Errorf("pid %d runs as uid %d, not %d", cred.Pid, cred.Uid, me)
	}
	return nil
}

// maxSocketPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSocketPath = 107

// shortPath calls f with a name for path that fits a socket address: path
// itself, or for a long one (a deep home directory, a long sandbox name)
// /proc/self/fd/N/<base>, N being the directory opened with O_PATH, as
// systemd does. Both listen and dial go through it.
func shortPath(path string, f func(name string) error) error {
	if len(path) <= maxSocketPath {
		return f(path)
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(fd)
	name := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(name) > maxSocketPath {
		return fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return f(name)
}

// Listen creates the socket at path, replacing a stale one (a daemon killed
// with SIGKILL leaves its socket behind), with mode 0600. The caller removes
// it when done (Remove): the listener does not, since it may know it only by
// its /proc name.
func Listen(path string) (*net.UnixListener, error) {
	if err := Remove(path); err != nil {
		return nil, err
	}
	var l *net.UnixListener
	err := shortPath(path, func(name string) error {
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %q: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		Remove(path)
		return nil, err
	}
	return l, nil
}

// Remove deletes the socket file at path, if there is one.
func Remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// dialSocket connects to the socket at path and checks who serves it.
func dialSocket(ctx context.Context, path string) (*net.UnixConn, error) {
	var c net.Conn
	err := shortPath(path, func(name string) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "unix", name)
		return err
	})
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	if err := checkPeer(uc); err != nil {
		uc.Close()
		return nil, fmt.Errorf("the socket %q is served by another user: %w", path, err)
	}
	return uc, nil
}

// Package ownersock is the unix sockets by which the owner's commands talk
// to a sandbox's host daemon: created 0600 in the owner's state directory,
// and on top of that each side checks the other's uid (SO_PEERCRED), so a
// mode loosened by accident, or a directory another user can reach, still
// lets no one else in, and a client never talks to another user's process.
//
// Paths longer than a socket address holds (108 bytes: a deep home, a long
// sandbox name) are reached through /proc/self/fd/N/<name>, N being the
// directory opened with O_PATH, as systemd does.
package ownersock

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

// maxPath is what fits in sockaddr_un.sun_path with its NUL.
const maxPath = 107

// Listen creates the socket at path, mode 0600, replacing a stale one (a
// daemon killed with SIGKILL leaves its socket behind) but never another
// kind of file. The caller removes it when done (Remove).
func Listen(path string) (*net.UnixListener, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("cannot listen on %q: it exists and is not a socket", path)
	}
	if err := Remove(path); err != nil {
		return nil, err
	}
	var l *net.UnixListener
	err := short(path, func(name string) error {
		var err error
		if l, err = net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"}); err != nil {
			return err
		}
		// Until this chmod the usual umask leaves others without the write
		// permission a connect needs; the peer check holds regardless.
		return os.Chmod(name, 0o600)
	})
	if err != nil {
		if l != nil {
			l.Close()
			Remove(path)
		}
		return nil, fmt.Errorf("cannot listen on %q: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	return l, nil
}

// Remove deletes the socket file at path, if there is one.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Accept returns the next connection of the owner; others are closed and
// reported to refused.
func Accept(l *net.UnixListener, refused func(error)) (*net.UnixConn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if err := CheckPeer(c); err != nil {
			c.Close()
			if refused != nil {
				refused(err)
			}
			continue
		}
		return c, nil
	}
}

// Dial connects to the socket at path and checks that its server runs as
// this user.
func Dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var c net.Conn
	err := short(path, func(name string) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "unix", name)
		return err
	})
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	if err := CheckPeer(uc); err != nil {
		uc.Close()
		return nil, fmt.Errorf("the socket %q is served by another user: %w", path, err)
	}
	return uc, nil
}

// CheckPeer returns an error unless the process at the other end of c runs
// with this process's effective uid.
func CheckPeer(c *net.UnixConn) error {
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

// short calls f with a name for path that fits a socket address.
func short(path string, f func(name string) error) error {
	if len(path) <= maxPath {
		return f(path)
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(fd)
	name := fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	if len(name) > maxPath {
		return fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return f(name)
}

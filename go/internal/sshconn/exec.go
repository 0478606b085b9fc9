package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// ExitTransport is the exit code returned together with every error from
// Exec and Attach: the status ssh(1) uses for its own failures, so a caller
// can pass it on unchanged.
const ExitTransport = 255

// closeGrace bounds how long a cancelled command's channel may take to
// close. The close is worth waiting for on a connection that stays in use:
// x/crypto reuses channel numbers, and a late message of dropbear for the old
// channel would land on the next session (seen as its exec failing with EOF).
const closeGrace = 2 * time.Second

// SessionOpener opens sessions on an established connection. *ssh.Client is
// one; a connection pool or an OpenSSH control-socket client can be another
// without changing Exec or Attach.
type SessionOpener interface {
	NewSession() (*ssh.Session, error)
}

// Command is one remote command. Argv reaches the remote program exactly:
// each element is quoted for the remote POSIX shell, which only undoes the
// quoting.
type Command struct {
	Argv []string
	// Dir is the remote working directory; empty means the login directory.
	Dir string
	// Env is exported before the command; names must be shell identifiers.
	Env map[string]string
	// Source is a remote file of shell settings read first when it exists
	// (the sandbox's session environment); empty means none.
	Source string
	// Stdin is copied to the remote command, then closed so it sees EOF;
	// nil means EOF at once.
	Stdin io.Reader
	// Stdout and Stderr receive the remote streams separately; nil discards.
	Stdout, Stderr io.Writer
}

// newSession opens a session on c whose output goes to stdout and stderr,
// and returns it with its input.
func newSession(c SessionOpener, stdout, stderr io.Writer) (*ssh.Session, io.WriteCloser, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, nil, &TransportError{Addr: remoteAddr(c), Err: fmt.Errorf("cannot open a session: %w", err)}
	}
	s.Stdout, s.Stderr = stdout, stderr
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, stdin, nil
}

// Exec runs cmd on c and returns its exit status: the remote status as is,
// 128+signal number when a signal killed it (as a shell reports it). A
// non-zero status is not an error. Any error comes with ExitTransport: a
// *TransportError when the connection failed or ended before the remote
// status arrived, another error for an invalid Command or when ctx ended
// first (the remote command is then sent SIGTERM and the session closed).
func Exec(ctx context.Context, c SessionOpener, cmd Command) (int, error) {
	line, err := cmd.Line()
	if err != nil {
		return ExitTransport, err
	}
	s, stdin, err := newSession(c, cmd.Stdout, cmd.Stderr)
	if err != nil {
		return ExitTransport, err
	}
	defer s.Close()
	if err := s.Start(line); err != nil {
		return ExitTransport, &TransportError{Addr: remoteAddr(c), Err: fmt.Errorf("cannot start the remote command: %w", err)}
	}
	go feed(stdin, cmd.Stdin)
	return wait(ctx, c, s)
}

// feed copies r to the remote stdin and then closes it, which sends EOF.
// Errors are dropped on purpose: a remote command may exit without reading
// all its input (`head -1`), and its status, not a broken pipe, is the
// result. The copy is not waited for: r may be a terminal that never ends.
func feed(stdin io.WriteCloser, r io.Reader) {
	if r != nil {
		io.Copy(stdin, r)
	}
	stdin.Close()
}

// wait collects the status of a started session. If ctx ends first it sends
// SIGTERM, closes the session and returns without waiting for the command:
// a server may keep the channel open until the command exits (OpenSSH
// refuses signals for root logins), and a cancelled caller must not wait for
// that; only the channel's close gets up to closeGrace.
func wait(ctx context.Context, c SessionOpener, s *ssh.Session) (int, error) {
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err := <-waited:
		return exitCode(remoteAddr(c), err)
	case <-ctx.Done():
		s.Signal(ssh.SIGTERM)
		s.Close()
		select {
		case <-waited:
		case <-time.After(closeGrace):
		}
		return ExitTransport, fmt.Errorf("remote command interrupted: %w", context.Cause(ctx))
	}
}

// exitCode turns the result of Session.Wait into an exit code.
func exitCode(addr string, err error) (int, error) {
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		// x/crypto knows only some signal names and reports 128 for
		// the others; the local table is complete for a Linux guest.
		if n := unix.SignalNum("SIG" + exit.Signal()); exit.Signal() != "" && n != 0 {
			return 128 + int(n), nil
		}
		return exit.ExitStatus(), nil
	case errors.As(err, &missing):
		return ExitTransport, &TransportError{Addr: addr, Err: errors.New("connection closed before the remote command reported its exit status")}
	default:
		// The remote status arrived (or the channel broke); Wait reports a
		// failed copy of the remote output, usually a closed local pipe.
		return ExitTransport, fmt.Errorf("cannot copy the remote command's output: %w", err)
	}
}

// remoteAddr names the server for error messages, when c can tell it.
func remoteAddr(c SessionOpener) string {
	if a, ok := c.(interface{ RemoteAddr() net.Addr }); ok && a.RemoteAddr() != nil {
		return a.RemoteAddr().String()
	}
	return "the sandbox"
}

// Line renders cmd as the one line Exec sends to the remote shell:
// `export K='v' && cd -- 'dir' && exec 'arg0' 'arg1'…`. exec replaces the
// shell, so the status and signals are the program's own.
func (cmd Command) Line() (string, error) {
	if len(cmd.Argv) == 0 {
		return "", errors.New("no command to run")
	}
	if strings.HasPrefix(cmd.Argv[0], "-") {
		// exec would take it as an option, and `exec --` is not portable (dash).
		return "", fmt.Errorf("command name %q starts with '-'", cmd.Argv[0])
	}
	var b strings.Builder
	src, err := sourcePrefix(cmd.Source)
	if err != nil {
		return "", err
	}
	b.WriteString(src)
	for _, k := range slices.Sorted(maps.Keys(cmd.Env)) {
		if !isShellName(k) {
			return "", fmt.Errorf("environment variable name %q is not valid", k)
		}
		v, err := Quote(cmd.Env[k])
		if err != nil {
			return "", fmt.Errorf("environment variable %q: %w", k, err)
		}
		b.WriteString("export " + k + "=" + v + " && ")
	}
	cd, err := cdPrefix(cmd.Dir)
	if err != nil {
		return "", err
	}
	b.WriteString(cd)
	b.WriteString("exec")
	for i, a := range cmd.Argv {
		q, err := Quote(a)
		if err != nil {
			return "", fmt.Errorf("argument %d: %w", i, err)
		}
		b.WriteString(" " + q)
	}
	return b.String(), nil
}

// sourcePrefix is `[ -r 'file' ] && . 'file'; ` for a remote command line,
// empty for no file. A missing file is no error: an older guest has none.
func sourcePrefix(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	q, err := Quote(file)
	if err != nil {
		return "", fmt.Errorf("source file: %w", err)
	}
	return "[ -r " + q + " ] && . " + q + "; ", nil
}

// cdPrefix is `cd -- 'dir' && ` for a remote command line, empty for no dir.
func cdPrefix(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	q, err := Quote(dir)
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	return "cd -- " + q + " && ", nil
}

// Quote quotes s for a POSIX shell so that it reads back as exactly s, one
// word, whatever it holds (spaces, quotes, $, backslashes, newlines, nothing):
// inside single quotes no character is special except the single quote
// itself, which is written as '\” (close, escaped quote, reopen). Every word
// is quoted, even a plain one, so there is no second rule to get wrong. A NUL
// byte cannot be passed in an argument, so it is an error.
func Quote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("contains a NUL byte")
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

func isShellName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == ""
}

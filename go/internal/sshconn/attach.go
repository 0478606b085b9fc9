package sshconn

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// DefaultTerm is the remote TERM when Session.Term is empty.
const DefaultTerm = "xterm-256color"

// Session is an interactive login shell.
type Session struct {
	// Dir is the remote directory the shell starts in (normally /workspace).
	Dir string
	// Source is read first when it exists, as in Command.
	Source string
	// Argv, when set, runs instead of the login shell (the agent's tmux
	// session); quoted as Command's.
	Argv []string
	// Term is the remote TERM; the caller passes its own $TERM, empty means
	// DefaultTerm.
	Term string
	// Stdin decides the mode: a terminal gets a remote PTY, anything else
	// (a pipe, a file, nil) a plain shell that reads commands from it.
	Stdin *os.File
	// Stdout and Stderr receive the remote output; nil discards. With a
	// PTY the remote side merges both into Stdout.
	Stdout, Stderr io.Writer
}

// Attach runs the user's login shell (or s.Argv) in s.Dir and returns its exit status,
// as Exec does (errors come with ExitTransport). When s.Stdin is a terminal it
// asks for a PTY of the terminal's size with s.Term, puts the local terminal
// in raw mode for the whole session and always restores it, and forwards
// window size changes (SIGWINCH). Otherwise no PTY is requested, so scripts
// can pipe commands in and read clean output.
func Attach(ctx context.Context, c SessionOpener, sess Session) (int, error) {
	line, err := sess.shellLine()
	if err != nil {
		return ExitTransport, err
	}

	s, stdin, err := newSession(c, sess.Stdout, sess.Stderr)
	if err != nil {
		return ExitTransport, err
	}
	defer s.Close()
	if fd, ok := terminalFD(sess.Stdin); ok {
		restore, err := startTerminal(c, s, fd, sess.Term)
		if err != nil {
			return ExitTransport, err
		}
		defer restore()
	}
	if err := s.Start(line); err != nil {
		return ExitTransport, &TransportError{Addr: remoteAddr(c), Err: fmt.Errorf("cannot start the remote shell: %w", err)}
	}
	if sess.Stdin == nil {
		go feed(stdin, nil)
		return wait(ctx, c, s)
	}
	fed := make(chan struct{})
	go func() {
		feed(stdin, sess.Stdin)
		close(fed)
	}()
	code, err := wait(ctx, c, s)
	s.Close() // before stopReading: a write into a closed session fails at once
	stopReading(sess.Stdin, fed)
	return code, err
}

// shellLine is the remote command: the login shell, or Argv.
func (sess Session) shellLine() (string, error) {
	if len(sess.Argv) > 0 {
		return Command{Argv: sess.Argv, Dir: sess.Dir, Source: sess.Source}.Line()
	}
	src, err := sourcePrefix(sess.Source)
	if err != nil {
		return "", err
	}
	cd, err := cdPrefix(sess.Dir)
	if err != nil {
		return "", err
	}
	// sshd runs this with the user's shell and sets $SHELL to it; -l makes
	// the replacement a login shell that reads the profile, as ssh(1) would.
	return src + cd + `exec "${SHELL:-/bin/sh}" -l`, nil
}

// terminalFD returns f's descriptor when f is a terminal. It goes through
// SyscallConn rather than Fd, which would switch f to blocking mode for good.
func terminalFD(f *os.File) (int, bool) {
	if f == nil {
		return 0, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd, fd >= 0 && term.IsTerminal(fd)
}

// startTerminal requests the remote PTY, makes the local terminal raw and
// forwards window changes; restore undoes the local part.
func startTerminal(c SessionOpener, s *ssh.Session, fd int, termName string) (restore func(), err error) {
	if termName == "" {
		termName = DefaultTerm
	}
	// Listen before reading the size, so a change in between is not lost.
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	w, h, err := term.GetSize(fd)
	if err != nil {
		w, h = 80, 24
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}
	if err := s.RequestPty(termName, h, w, modes); err != nil {
		signal.Stop(winch)
		return nil, &TransportError{Addr: remoteAddr(c), Err: fmt.Errorf("cannot get a remote terminal: %w", err)}
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		signal.Stop(winch)
		return nil, fmt.Errorf("cannot put the terminal in raw mode: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if w, h, err := term.GetSize(fd); err == nil {
					s.WindowChange(h, w)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		term.Restore(fd, old)
	}, nil
}

// stopReading ends the copy of f to the finished session when f supports
// deadlines (a non-blocking file), so no later input is swallowed by it, and
// then clears the deadline again. A blocking file (the usual os.Stdin) cannot
// be interrupted; its copy ends with the next read, which is harmless for a
// CLI that exits after the session.
func stopReading(f *os.File, fed <-chan struct{}) {
	if f.SetReadDeadline(time.Now()) != nil {
		return
	}
	<-fed
	f.SetReadDeadline(time.Time{})
}

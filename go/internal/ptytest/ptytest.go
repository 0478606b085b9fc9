// Package ptytest opens pseudo-terminals for tests: the terminal a user's
// command sees (the slave) and the terminal emulator's side (the master) that
// the test types into and reads from. It is imported by tests only.
package ptytest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal pair opened the way posix_openpt, unlockpt and
// ptsname do it.
type PTY struct {
	Master, Slave *os.File
	SlaveFD       int
}

// Open opens a pair, closed when the test ends. Both ends are non-blocking,
// so the runtime poller owns them and a read can be stopped by Close.
func Open(t testing.TB) *PTY {
	t.Helper()
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("posix_openpt: %v", err)
	}
	master := os.NewFile(uintptr(m), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	slave := os.NewFile(uintptr(s), name)
	t.Cleanup(func() { slave.Close() })
	return &PTY{Master: master, Slave: slave, SlaveFD: s}
}

// Resize sets the terminal's window size.
func (p *PTY) Resize(t testing.TB, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(p.SlaveFD, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

// Termios returns the terminal's current settings.
func (p *PTY) Termios(t testing.TB) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(p.SlaveFD, unix.TCGETS)
	if err != nil {
		t.Fatalf("TCGETS: %v", err)
	}
	return *tio
}

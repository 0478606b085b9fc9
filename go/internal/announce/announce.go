// Package announce is the guest's readiness announcement: a line the guest
// writes to its serial console once its sshd listens (docs/runner-contract.md,
// optional), and the host's watch for it in state/console.log, the file the
// runner's console goes to anyway.
//
// The announcement is a hint, never a proof: it only makes the host start an
// SSH handshake at once instead of at its next poll. The handshake with the
// pinned host key is what proves readiness, so a line the sandbox forges, or
// an old one, costs one failed attempt and nothing else. The console is
// sandbox-provided bytes: they are read in bounded pieces and only searched.
package announce

import (
	"bytes"
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Line is what the guest writes to its console, on a line of its own, each
// time its sshd starts listening. The Debian test guest's init and the NixOS
// guest's keystone-agent-ready unit write it.
const Line = "keystone-agent: sshd is listening"

// chunk bounds one read of the console.
const chunk = 64 << 10

// fallbackPoll is how often the console is read when inotify is unavailable.
const fallbackPoll = 20 * time.Millisecond

// Scanner counts the announcements in a stream fed in pieces, keeping only
// the few bytes that may begin one split across two pieces.
type Scanner struct {
	tail []byte
}

// Feed returns how many announcements end in p.
func (s *Scanner) Feed(p []byte) int {
	data := append(s.tail, p...)
	n := bytes.Count(data, []byte(Line))
	keep := min(len(Line)-1, len(data))
	// A line found in data cannot be kept whole in the tail, so it is
	// never counted twice.
	s.tail = append(s.tail[:0:0], data[len(data)-keep:]...)
	return n
}

// End is where the console at path ends now (0 when there is none yet): the
// offset to Watch from for a boot that begins now.
func End(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Watch follows the file at path from offset (the console's size when the
// runner started, so an earlier boot's line is not taken for this one's) and
// sends on the returned channel each time the announcement appears, until ctx
// ends. The channel holds one pending value: a hint not yet taken is not
// repeated. A missing file (a runner whose console goes elsewhere, such as a
// systemd unit's journal) gives no hints.
func Watch(ctx context.Context, path string, offset int64) <-chan struct{} {
	hints := make(chan struct{}, 1)
	f, err := os.Open(path)
	if err != nil {
		return hints
	}
	changed, stop := notify(path)
	go func() {
		defer f.Close()
		defer stop()
		var s Scanner
		buf := make([]byte, chunk)
		for {
			for {
				n, err := f.ReadAt(buf, offset)
				offset += int64(n)
				if s.Feed(buf[:n]) > 0 {
					select {
					case hints <- struct{}{}:
					default:
					}
				}
				if n < len(buf) || err != nil {
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
	return hints
}

// notify returns a channel that receives when the file at path is written,
// by inotify, or every fallbackPoll when inotify is not available.
func notify(path string) (<-chan struct{}, func()) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		if _, err = unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		t := time.NewTicker(fallbackPoll)
		c := make(chan struct{})
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-t.C:
					select {
					case c <- struct{}{}:
					case <-done:
						return
					}
				case <-done:
					return
				}
			}
		}()
		return c, func() { t.Stop(); close(done) }
	}
	// Non-blocking, so the runtime's poller owns it and Close ends a read.
	ev := os.NewFile(uintptr(fd), "inotify")
	c := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := ev.Read(buf); err != nil {
				return // closed by stop; hints then come only from the caller's own polling
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return c, func() { ev.Close() }
}

// Package progress shows long work on a terminal: one status line, redrawn
// in place, saying what is being done, for how long, and the latest detail
// (a build's last log line). Where the writer is not a terminal it prints the
// title once and nothing more, so logs, pipes and CI output stay clean.
//
// It owns the drawing only: what the work is and what its details mean is
// the caller's (nixbuild reads nix's output; start names the clone).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

// redrawEvery bounds how often the line is redrawn: at most this often for
// new details, and once a second for the elapsed time.
const redrawEvery = 100 * time.Millisecond

// Line is one piece of long work in progress.
type Line struct {
	w     io.Writer
	title string
	tty   bool
	width int
	now   func() time.Time
	start time.Time

	mu     sync.Mutex
	detail string
	dirty  bool // a detail arrived since the last draw
	drawn  time.Time
	done   bool
	stop   chan struct{}
	ticker sync.WaitGroup
}

// Start begins a line on w (normally stderr). On a terminal it is redrawn
// until Done; elsewhere the title is printed once, as a plain line.
func Start(w io.Writer, title string) *Line {
	width, tty := Terminal(w)
	l := newLine(w, title, tty, width, time.Now)
	if tty {
		l.ticker.Add(1)
		go l.tick(redrawEvery)
	}
	return l
}

// Terminal reports whether w is a terminal that can redraw a line, and its
// width: a *os.File on a tty, TERM not "dumb".
func Terminal(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return width, true
}

func newLine(w io.Writer, title string, tty bool, width int, now func() time.Time) *Line {
	l := &Line{w: w, title: title, tty: tty, width: width, now: now, start: now(), stop: make(chan struct{})}
	if tty {
		l.draw()
	} else {
		fmt.Fprintln(w, title)
	}
	return l
}

func (l *Line) tick(every time.Duration) {
	defer l.ticker.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			now := l.now()
			second := now.Sub(l.start)/time.Second != l.drawn.Sub(l.start)/time.Second
			if !l.done && (l.dirty || second) {
				l.draw()
			}
			l.mu.Unlock()
		}
	}
}

// Set replaces the detail shown after the elapsed time (control characters
// and escape sequences are dropped, so a log line cannot move the cursor).
func (l *Line) Set(detail string) {
	if !l.tty {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.detail = Clean(detail)
	l.dirty = true
	if !l.done && l.now().Sub(l.drawn) >= redrawEvery {
		l.draw()
	}
}

// Done ends the line. On a terminal the line becomes the title and the time
// taken, so the scrollback keeps a record.
func (l *Line) Done() {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	l.mu.Unlock()
	close(l.stop)
	l.ticker.Wait()
	if l.tty {
		fmt.Fprintf(l.w, "\r\x1b[K%s (%s)\n", l.title, Elapsed(l.now().Sub(l.start)))
	}
}

// draw rewrites the line in place; l.mu is held.
func (l *Line) draw() {
	l.drawn, l.dirty = l.now(), false
	fmt.Fprintf(l.w, "\r\x1b[K%s", Render(l.title, l.drawn.Sub(l.start), l.detail, l.width))
}

// Render is the status line: title, elapsed time and detail, cut to fit in
// width columns (one is left free so the terminal never wraps).
func Render(title string, elapsed time.Duration, detail string, width int) string {
	s := title + " · " + Elapsed(elapsed)
	if detail != "" {
		s += " · " + detail
	}
	return truncate(s, width-1)
}

// Elapsed formats a duration as a person reads a stopwatch: 7s, 1m05s, 1h02m.
func Elapsed(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

func truncate(s string, max int) string {
	if max < 1 || utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// Clean drops escape sequences and control characters from one line of
// someone else's output, and trims it.
func Clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			i = skipEscape(s, i)
		case c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(b.String(), "?"))
}

// skipEscape returns the index of the last byte of the escape sequence
// starting at s[i]: CSI (ESC [ … final byte) or a two-byte escape.
func skipEscape(s string, i int) int {
	if i+1 < len(s) && s[i+1] == '[' {
		for j := i + 2; j < len(s); j++ {
			if s[j] >= 0x40 && s[j] <= 0x7e {
				return j
			}
		}
		return len(s) - 1
	}
	return i + 1
}

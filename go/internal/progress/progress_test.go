package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/ptytest"
)

func TestElapsed(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {1400 * time.Millisecond, "1s"}, {59 * time.Second, "59s"},
		{65 * time.Second, "1m05s"}, {3599 * time.Second, "59m59s"}, {3720 * time.Second, "1h02m"},
	} {
		if got := Elapsed(c.d); got != c.want {
			t.Errorf("Elapsed(%v) = %q; want %q", c.d, got, c.want)
		}
	}
}

func TestRender(t *testing.T) {
	for _, c := range []struct {
		name, detail string
		width        int
		want         string
	}{
		{"no detail", "", 80, "Building · 1m05s"},
		{"detail", "linux> CC fork.o", 80, "Building · 1m05s · linux> CC fork.o"},
		{"cut to the width, one column free", "linux> CC kernel/fork.o", 21, "Building · 1m05s · …"},
		{"runes, not bytes", "ééééé", 23, "Building · 1m05s · éé…"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Render("Building", 65*time.Second, c.detail, c.width); got != c.want {
				t.Errorf("got %q; want %q", got, c.want)
			}
		})
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                       "plain",
		"  \x1b[31mred\x1b[0m text\r": "red text",
		"a\tb\x07c\x7f":               "a bc",
		"move\x1b[2Aup\x1bMx":         "moveupx",
		"cut \x1b[1":                  "cut",
		"bad \xff utf8":               "bad ? utf8",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q; want %q", in, got, want)
		}
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLineOnATerminal(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newLine(&out, "Cloning app", true, 80, clock.now)
	clock.t = clock.t.Add(3 * time.Second)
	l.Set("\x1b[1mlinux> CC fork.o\n")
	clock.t = clock.t.Add(10 * time.Millisecond)
	l.Set("dropped: redrawn too soon")
	clock.t = clock.t.Add(2 * time.Second)
	l.Done()
	l.Done() // a second Done prints nothing
	want := "\r\x1b[KCloning app · 0s" +
		"\r\x1b[KCloning app · 3s · linux> CC fork.o" +
		"\r\x1b[KCloning app (5s)\n"
	if out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
}

func TestLineElsewhereIsOneLine(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newLine(&out, "Cloning app", false, 0, clock.now)
	l.Set("detail")
	clock.t = clock.t.Add(5 * time.Second)
	l.Done()
	if out.String() != "Cloning app\n" {
		t.Errorf("got %q; want the title once", out.String())
	}
}

// Start finds the terminal itself: a PTY gets the redrawn line, a pipe the
// title alone.
func TestStartDetectsTheTerminal(t *testing.T) {
	t.Setenv("TERM", "xterm")
	p := ptytest.Open(t)
	p.Resize(t, 24, 100)
	l := Start(p.Slave, "Building the MicroVM")
	l.Set("hello> world")
	l.Done()
	p.Master.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "\n") {
		n, err := p.Master.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading the terminal: %v (got %q)", err, got.String())
		}
	}
	if !strings.Contains(got.String(), "\r\x1b[KBuilding the MicroVM · 0s") || !strings.Contains(got.String(), "Building the MicroVM (0s)") {
		t.Errorf("the terminal got %q; want the redrawn line and the final one", got.String())
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l = Start(w, "Building the MicroVM")
	l.Set("hello> world")
	l.Done()
	w.Close()
	all, _ := io.ReadAll(r)
	if string(all) != "Building the MicroVM\n" {
		t.Errorf("the pipe got %q; want the title alone", all)
	}
}

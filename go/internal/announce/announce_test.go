package announce_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/announce"
)

// FuzzScanner: however a console is cut into pieces, the scanner counts the
// announcements the whole holds, with memory bounded by the line's length.
func FuzzScanner(f *testing.F) {
	f.Add([]byte("[    1.0] boot\r\n"+announce.Line+"\r\n"), uint8(7))
	f.Add([]byte(announce.Line+announce.Line[:10]), uint8(3))
	f.Add([]byte("keystone-agent: sshd is listenin"), uint8(1))
	f.Fuzz(func(t *testing.T, console []byte, cut uint8) {
		step := int(cut)%64 + 1
		var s announce.Scanner
		got := 0
		for i := 0; i < len(console); i += step {
			got += s.Feed(console[i:min(i+step, len(console))])
		}
		if want := bytes.Count(console, []byte(announce.Line)); got != want {
			t.Fatalf("counted %d announcements in pieces of %d; the whole has %d", got, step, want)
		}
	})
}

func TestWatch(t *testing.T) {
	console := filepath.Join(t.TempDir(), "console.log")
	// An earlier boot's announcement is before the offset and must not count.
	old := []byte("old boot\n" + announce.Line + "\n")
	if err := os.WriteFile(console, old, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hints := announce.Watch(ctx, console, announce.End(console))
	f, err := os.OpenFile(console, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("[    0.1] Linux version\r\nkeystone-agent: sshd is")
	select {
	case <-hints:
		t.Fatal("a hint before the announcement was complete, or for the earlier boot")
	case <-time.After(200 * time.Millisecond):
	}
	f.WriteString(" listening\r\n")
	select {
	case <-hints:
	case <-time.After(10 * time.Second):
		t.Fatal("no hint after the announcement")
	}
}

// The NixOS guest writes the same line as the test guest, whose script is
// rendered from Line (modules/guest-ssh-ready.nix holds it as a literal).
func TestNixGuestWritesTheLine(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "modules", "guest-ssh-ready.nix"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("modules/ is not beside go/ (a build of the Go tree alone)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`line = "`+announce.Line+`";`)) {
		t.Errorf("modules/guest-ssh-ready.nix does not announce %q", announce.Line)
	}
}

func TestWatchWithoutConsole(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hints := announce.Watch(ctx, filepath.Join(t.TempDir(), "none.log"), 0)
	select {
	case <-hints:
		t.Fatal("a hint without a console")
	case <-time.After(100 * time.Millisecond):
	}
}

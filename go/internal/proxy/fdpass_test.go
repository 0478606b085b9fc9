package proxy

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qemuSide returns a connected pair as qemu's guestfwd gives it: the relay's
// stdin (a file) and the guest's end.
func qemuSide(t *testing.T) (*os.File, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	guest, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	slirp, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := slirp.(*net.TCPConn).File()
	slirp.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guest.Close(); f.Close() })
	return f, guest
}

func TestRelayHandsTheConnectionOver(t *testing.T) {
	// A state directory deep enough that the socket's path does not fit sun_path.
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	os.MkdirAll(dir, 0o700)
	sock := filepath.Join(dir, "proxy.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
	stdin, guest := qemuSide(t)
	if err := Relay(sock, stdin); err != nil {
		t.Fatal(err)
	}
	stdin.Close() // the relay exits
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(guest, "ping")
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("daemon read %q %v", buf, err)
	}
	io.WriteString(c, "pong")
	guest.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(guest, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("guest read %q %v", buf, err)
	}
	c.Close()
	if n, err := guest.Read(buf); err != io.EOF {
		t.Fatalf("the guest's connection stays open after the daemon closed it: %d %v", n, err)
	}
}

func TestListenRefusesToReplaceAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "proxy.sock")
	os.WriteFile(p, []byte("data"), 0o600)
	if _, err := Listen(p); err == nil {
		t.Fatal("a regular file was replaced by the socket")
	}
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Fatal("the file was changed")
	}
}

func TestRelayWithoutDaemon(t *testing.T) {
	stdin, _ := qemuSide(t)
	if err := Relay(filepath.Join(t.TempDir(), "proxy.sock"), stdin); err == nil {
		t.Fatal("no error without a daemon")
	}
	if r := Unavailable("demo"); !strings.HasPrefix(r, "HTTP/1.1 503 ") || !strings.Contains(r, "keystone agent status demo") {
		t.Fatalf("%q", r)
	}
}

func TestRelayCommandQuoting(t *testing.T) {
	got := RelayCommand("/nix/store/x/bin/keystone", "demo", "/home/o'brien/state dir/proxy.sock")
	want := `'/nix/store/x/bin/keystone' agent proxy-relay --sandbox 'demo' '/home/o'\''brien/state dir/proxy.sock'`
	if got != want {
		t.Fatalf("got %s", got)
	}
}

package ownersock

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stale socket is replaced, another kind of file never is, and a path too
// long for a socket address still works, with mode 0600.
func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	os.MkdirAll(dir, 0o700)
	sock := filepath.Join(dir, "x.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen on a %d-byte path: %v", len(sock), err)
	}
	l.Close() // stale, as after SIGKILL
	if l, err = Listen(sock); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", st.Mode(), err)
	}
	go func() {
		if c, err := Accept(l, nil); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := Dial(context.Background(), sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("read %q, %v", buf, err)
	}
	c.Close()

	file := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := Listen(file); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("the file changed: %q", b)
	}
}

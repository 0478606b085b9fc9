package sshconn_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"golang.org/x/crypto/ssh"
)

// FuzzQuote checks that any argument, quoted, reads back from /bin/sh as
// itself. `go test` runs the seeds; `go test -fuzz FuzzQuote` explores.
func FuzzQuote(f *testing.F) {
	for _, a := range trickyArgs {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		q, err := sshconn.Quote(arg)
		if strings.IndexByte(arg, 0) >= 0 {
			if err == nil {
				t.Fatalf("Quote(%q) accepted a NUL byte", arg)
			}
			return
		}
		if err != nil {
			t.Fatalf("Quote(%q): %v", arg, err)
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+q).Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", "printf %s "+q, err)
		}
		if string(out) != arg {
			t.Errorf("Quote(%q) = %s reads back as %q", arg, q, out)
		}
	})
}

// FuzzParseHostKey checks that no input makes ParseHostKey panic, and that
// what it accepts is a key that round-trips.
func FuzzParseHostKey(f *testing.F) {
	_, pub, err := sshconn.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add([]byte("ssh-ed25519 AAAA"))
	f.Add([]byte(`command="x" ` + string(pub)))
	f.Fuzz(func(t *testing.T, line []byte) {
		key, err := sshconn.ParseHostKey(line)
		if err != nil {
			return
		}
		if _, err := sshconn.ParseHostKey(ssh.MarshalAuthorizedKey(key)); err != nil {
			t.Errorf("accepted key does not round-trip: %v", err)
		}
	})
}

package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// The user's own key is authorised next to the sandbox's, and password login
// is offered only when the user has none (the guide's "SSH Authentication").
func TestEnsureKeysFollowsTheGuide(t *testing.T) {
	home := t.TempDir()
	e := &Env{Home: home}
	sb := &Sandbox{Dir: statedir.Sandbox(filepath.Join(t.TempDir(), "sb"))}
	marker := filepath.Join(sb.Dir.Guest(), statedir.PasswordAuth)

	hostPub, err := e.ensureKeys(sb)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hostPub, "ssh-ed25519 ") {
		t.Fatalf("host key %q; want ssh-ed25519", hostPub)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no user key: password-auth marker missing: %v", err)
	}
	if st, _ := os.Stat(sb.Dir.Path(statedir.ClientKey)); st == nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client key mode: %v", st)
	}
	if _, err := os.Stat(filepath.Join(sb.Dir.Guest(), statedir.ClientKey)); err == nil {
		t.Fatal("the client's private key is in the directory shared with the guest")
	}

	// The guide's order: id_ed25519 before id_rsa.
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_rsa.pub"), []byte("ssh-rsa AAAArsa user@host\n"), 0o644)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519.pub"), []byte("ssh-ed25519 AAAAed user@host\n"), 0o644)
	again, err := e.ensureKeys(sb)
	if err != nil || again != hostPub {
		t.Fatalf("second ensureKeys: %q, %v; want the same host key %q", again, err, hostPub)
	}
	auth, _ := os.ReadFile(filepath.Join(sb.Dir.Guest(), statedir.AuthorizedKeys))
	if !strings.Contains(string(auth), "ssh-ed25519 AAAAed user@host") || strings.Contains(string(auth), "AAAArsa") {
		t.Fatalf("authorized_keys = %q; want the client key and id_ed25519.pub only", auth)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("password-auth marker kept although the user has a key: %v", err)
	}
}

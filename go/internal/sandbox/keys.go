package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// userKeyFiles is the guide's detection order ("SSH Authentication").
var userKeyFiles = []string{"id_ed25519.pub", "id_rsa.pub", "id_ecdsa.pub"}

// userPublicKey returns the user's own public key, or nil when none exists.
func (e *Env) userPublicKey() ([]byte, string) {
	for _, f := range userKeyFiles {
		p := filepath.Join(e.Home, ".ssh", f)
		if data, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(data)) > 0 {
			return bytes.TrimSpace(data), p
		}
	}
	return nil, ""
}

// PasswordLogin tells whether the guest was booted with password login: the
// marker ensureKeys writes when the user has no SSH key.
func (sb *Sandbox) PasswordLogin() bool {
	_, err := os.Lstat(filepath.Join(sb.Dir.Guest(), statedir.PasswordAuth))
	return err == nil
}

// ensureKeys creates the sandbox's client key and guest host key when they
// are missing, and (re)writes authorized_keys and the password marker: the
// user may have created a key since the last start. It returns the pinned
// host public key.
func (e *Env) ensureKeys(sb *Sandbox) (string, error) {
	guest := sb.Dir.Guest()
	if err := os.MkdirAll(guest, 0o700); err != nil {
		return "", err
	}
	clientPub, err := ensureKeyPair(sb.Dir.Path(statedir.ClientKey))
	if err != nil {
		return "", fmt.Errorf("failed to create the sandbox's client key: %w", err)
	}
	hostPub, err := ensureKeyPair(filepath.Join(guest, statedir.HostKey))
	if err != nil {
		return "", fmt.Errorf("failed to create the guest's host key: %w", err)
	}
	auth := append(clientPub, '\n')
	userPub, _ := e.userPublicKey()
	if userPub != nil {
		auth = append(append(auth, userPub...), '\n')
	}
	if err := atomicfile.Write(filepath.Join(guest, statedir.AuthorizedKeys), auth, 0o644); err != nil {
		return "", err
	}
	marker := filepath.Join(guest, statedir.PasswordAuth)
	if userPub == nil {
		err = atomicfile.Write(marker, []byte("no SSH key in ~/.ssh: password login enabled\n"), 0o644)
	} else if err = os.Remove(marker); errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return strings.TrimSpace(string(hostPub)), err
}

// ensureKeyPair reads path.pub, generating the pair when the private key is missing.
func ensureKeyPair(path string) ([]byte, error) {
	if _, err := os.Stat(path); err == nil {
		pub, err := os.ReadFile(path + ".pub")
		return bytes.TrimSpace(pub), err
	}
	priv, pub, err := sshconn.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path+".pub", pub, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, priv, 0o600); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(pub), nil
}

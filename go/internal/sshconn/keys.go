package sshconn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// keyComment is written into generated keys so a key found in an
// authorized_keys file or a state directory says where it came from.
const keyComment = "keystone-agent"

// GenerateKey makes a new ed25519 key pair: priv is an unencrypted OpenSSH
// private key (PEM, the format both OpenSSH's sshd and dropbear read as a host
// key), pub is its authorized_keys line ending in a newline. The same function
// makes client keys and guest host keys; ed25519 is the one type every guest
// server and x/crypto agree on (dropbear fails RSA negotiation with x/crypto).
func GenerateKey() (priv, pub []byte, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot generate an ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(sk, keyComment)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot encode the private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot encode the public key: %w", err)
	}
	line := ssh.MarshalAuthorizedKey(sshPub) // "type base64\n"
	line = append(line[:len(line)-1], " "+keyComment+"\n"...)
	return pem.EncodeToMemory(block), line, nil
}

// LoadSigner reads an unencrypted private key file (OpenSSH or PEM format).
// A passphrase-protected key is refused with a message that says so: the
// sandbox's own key is never encrypted, and prompting is not this package's job.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read ssh key %q: %w", path, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("cannot use ssh key %q: it is protected by a passphrase", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse ssh key %q: %w", path, err)
	}
	return s, nil
}

// ParseHostKey parses one authorized_keys-style line ("ssh-ed25519 AAAA…
// comment"), the form in which a sandbox's host key is pinned. Options before
// the key type, or anything after the first line, are refused: a pinned key is
// exactly one key.
func ParseHostKey(line []byte) (ssh.PublicKey, error) {
	key, _, options, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, fmt.Errorf("cannot parse host key: %w", err)
	}
	if len(options) > 0 {
		return nil, fmt.Errorf("cannot parse host key: unexpected options %q", options)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("cannot parse host key: more than one key")
	}
	return key, nil
}

package sshconn_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
)

func TestKeysRoundTrip(t *testing.T) {
	priv, pub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(priv, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("private key is not OpenSSH PEM: %q…", priv[:40])
	}
	if !bytes.HasPrefix(pub, []byte("ssh-ed25519 ")) || !bytes.HasSuffix(pub, []byte("\n")) {
		t.Errorf("public key is not one authorized_keys line: %q", pub)
	}
	path := filepath.Join(t.TempDir(), "client_ed25519")
	if err := atomicfile.Write(path, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := sshconn.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := sshconn.ParseHostKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), hostKey.Marshal()) {
		t.Error("the loaded private key does not match the generated public key")
	}
}

func TestLoadSignerErrors(t *testing.T) {
	dir := t.TempDir()
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(sk, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := filepath.Join(dir, "encrypted")
	os.WriteFile(encrypted, pem.EncodeToMemory(block), 0o600)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	for path, want := range map[string]string{
		encrypted:                     "protected by a passphrase",
		garbage:                       "cannot parse ssh key",
		filepath.Join(dir, "missing"): "cannot read ssh key",
	} {
		_, err := sshconn.LoadSigner(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadSigner(%q) = %v; want an error naming the file and saying %q", path, err, want)
		}
	}
}

func TestParseHostKeyRefuses(t *testing.T) {
	_, pub1, _ := sshconn.GenerateKey()
	_, pub2, _ := sshconn.GenerateKey()
	for name, line := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("ssh-ed25519 !!!notbase64"),
		"options":       append([]byte(`command="true" `), pub1...),
		"two keys":      append(append([]byte{}, pub1...), pub2...),
		"comment only":  []byte("# nothing\n"),
		"truncated key": pub1[:30],
	} {
		if _, err := sshconn.ParseHostKey(line); err == nil {
			t.Errorf("ParseHostKey(%s) succeeded; want an error", name)
		}
	}
	if _, err := sshconn.ParseHostKey(append(append([]byte{}, pub1...), "\n\n"...)); err != nil {
		t.Errorf("ParseHostKey with trailing blank lines: %v", err)
	}
}

func TestDialRefusesWrongHostKey(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server, _ *ssh.Client) {
		_, otherPub, _ := sshconn.GenerateKey()
		other, _ := sshconn.ParseHostKey(otherPub)
		target := srv.Target()
		target.HostKey = other
		c, err := sshconn.Dial(context.Background(), target)
		if err == nil {
			c.Close()
			t.Fatal("Dial with a wrong pinned host key succeeded")
		}
		var mismatch *sshconn.HostKeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("Dial error %v (%T) is not a *HostKeyMismatchError", err, err)
		}
		var te *sshconn.TransportError
		if !errors.As(err, &te) {
			t.Errorf("Dial error %v is not a *TransportError", err)
		}
		if !strings.Contains(err.Error(), "host key of "+srv.Addr+" does not match the pinned key for the sandbox") {
			t.Errorf("message %q does not say the host key does not match the pinned key", err)
		}
		if !bytes.Equal(mismatch.Got.Marshal(), srv.HostKey.Marshal()) {
			t.Errorf("mismatch reports key %s; want the server's %s", ssh.FingerprintSHA256(mismatch.Got), ssh.FingerprintSHA256(srv.HostKey))
		}
		t.Logf("error: %v", err)
	})
}

func TestDialRefusesWrongClientKey(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *sshdtest.Server, _ *ssh.Client) {
		priv, _, _ := sshconn.GenerateKey()
		stranger, _ := ssh.ParsePrivateKey(priv)
		target := srv.Target()
		target.Signer = stranger
		c, err := sshconn.Dial(context.Background(), target)
		if err == nil {
			c.Close()
			t.Fatal("Dial with an unauthorized client key succeeded")
		}
		var te *sshconn.TransportError
		var mismatch *sshconn.HostKeyMismatchError
		if !errors.As(err, &te) || errors.As(err, &mismatch) {
			t.Errorf("Dial error %v (%T); want a *TransportError that is not a host key mismatch", err, err)
		}
		t.Logf("error: %v", err)
	})
}

func TestDialIncompleteTarget(t *testing.T) {
	srvTarget := sshconn.Target{Addr: "127.0.0.1:1", User: "u"}
	if _, err := sshconn.Dial(context.Background(), srvTarget); err == nil || !strings.Contains(err.Error(), "no client key") {
		t.Errorf("Dial without a key = %v; want an error naming the missing key", err)
	}
}

// silentListener accepts TCP connections and never writes a byte, like qemu's
// user-net forwarder before the guest's sshd is up.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// someTarget is a complete target whose keys no server knows.
func someTarget(t *testing.T, addr string) sshconn.Target {
	t.Helper()
	priv, pub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.ParsePrivateKey(priv)
	hostKey, _ := sshconn.ParseHostKey(pub)
	return sshconn.Target{Addr: addr, User: "sandbox", Signer: signer, HostKey: hostKey}
}

func TestDialContextBoundsHandshake(t *testing.T) {
	target := someTarget(t, silentListener(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sshconn.Dial(ctx, target)
	var te *sshconn.TransportError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent port = %v; want a *TransportError wrapping context.DeadlineExceeded", err)
	}
	// Generous for a loaded machine; a handshake not bound by ctx would hang.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Dial took %v with a 300ms context", d)
	}
}

func TestWaitReadySilentPort(t *testing.T) {
	t.Run("the VM exits", func(t *testing.T) {
		addr := silentListener(t)
		exited := make(chan struct{})
		// At 1.2s the first attempt has given up waiting for a banner (1s) and
		// the others are still waiting.
		time.AfterFunc(1200*time.Millisecond, func() { close(exited) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		err := sshconn.WaitReady(ctx, someTarget(t, addr), exited)
		elapsed := time.Since(start)
		var we *sshconn.WaitError
		if !errors.As(err, &we) || !errors.Is(err, sshconn.ErrVMExited) {
			t.Fatalf("WaitReady = %v; want a *WaitError with ErrVMExited", err)
		}
		// It must notice at once, not after the attempts in flight reach their
		// own 15 s bound (generous for a loaded machine).
		if elapsed < 1200*time.Millisecond || elapsed > 10*time.Second {
			t.Errorf("WaitReady returned after %v; want soon after the VM exited at 1.2s", elapsed)
		}
		if !strings.Contains(err.Error(), "the VM exited while waiting for its sshd at "+addr) {
			t.Errorf("message %q does not name what it waited for", err)
		}
		// Attempts overlap, and one hanging without a banner is abandoned.
		if we.Attempts < 4 || we.Last == nil || !strings.Contains(we.Last.Error(), "no SSH banner within 1s") {
			t.Errorf("WaitError{Attempts: %d, Last: %v}; want overlapping attempts and the abandoned one recorded", we.Attempts, we.Last)
		}
		t.Logf("error: %v", err)
	})
	t.Run("the context expires", func(t *testing.T) {
		addr := silentListener(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := sshconn.WaitReady(ctx, someTarget(t, addr), make(chan struct{}))
		elapsed := time.Since(start)
		var we *sshconn.WaitError
		if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitReady = %v; want a *WaitError with context.DeadlineExceeded", err)
		}
		if elapsed > 10*time.Second { // generous: an attempt's own bound is 15 s
			t.Errorf("WaitReady returned after %v; want about 2.5s", elapsed)
		}
		// Attempts without a banner end after about a second, so hanging
		// ones never stop new ones for long.
		if we.Attempts < 6 || we.Last == nil || !strings.Contains(we.Last.Error(), "no SSH banner") {
			t.Errorf("WaitError{Attempts: %d, Last: %v}; want attempts abandoned for lack of a banner", we.Attempts, we.Last)
		}
		if !strings.Contains(err.Error(), "timed out waiting for sshd at "+addr) {
			t.Errorf("message %q does not name what it waited for", err)
		}
		t.Logf("error: %v", err)
	})
	t.Run("the VM had already exited", func(t *testing.T) {
		exited := make(chan struct{})
		close(exited)
		err := sshconn.WaitReady(context.Background(), someTarget(t, silentListener(t)), exited)
		if !errors.Is(err, sshconn.ErrVMExited) {
			t.Errorf("WaitReady = %v; want ErrVMExited", err)
		}
	})
}

func TestWaitReadyLateServer(t *testing.T) {
	for _, k := range servers {
		t.Run(string(k), func(t *testing.T) {
			srv := sshdtest.New(t, k, sshdtest.FreeAddr(t))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- sshconn.WaitReady(ctx, srv.Target(), nil) }()
			time.Sleep(1500 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("WaitReady returned %v before the server started", err)
			default:
			}
			srv.Start(t)
			if err := <-done; err != nil {
				t.Fatalf("WaitReady: %v\n%s", err, srv.Log())
			}
			t.Logf("ready after %v", time.Since(start))
		})
	}
}

func TestWaitReadyHostKeyMismatchIsImmediate(t *testing.T) {
	for _, k := range servers {
		t.Run(string(k), func(t *testing.T) {
			srv := sshdtest.Start(t, k)
			target := srv.Target()
			_, otherPub, _ := sshconn.GenerateKey()
			target.HostKey, _ = sshconn.ParseHostKey(otherPub)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := sshconn.WaitReady(ctx, target, nil)
			var mismatch *sshconn.HostKeyMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("WaitReady = %v; want a *HostKeyMismatchError", err)
			}
			if d := time.Since(start); d > 15*time.Second { // retrying would last the context's 20 s
				t.Errorf("WaitReady retried a host key mismatch for %v", d)
			}
		})
	}
}

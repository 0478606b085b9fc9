// Package sshconn is everything keystone agent does over SSH: keys, a dial
// that pins the sandbox's host key, waiting for a booting guest's sshd,
// running one command with its argv intact, and an interactive attach.
//
// It speaks SSH with golang.org/x/crypto/ssh and never runs the ssh binary.
// It never accepts a host key it was not given: every connection is pinned
// to the one key generated for the sandbox (ssh.FixedHostKey), so there is no
// known_hosts file, no trust on first use and no way to turn checking off.
//
// Errors the CLI must tell apart are typed: *HostKeyMismatchError (someone
// else answers on the sandbox's port), *TransportError (the connection failed;
// ssh(1) exits 255 for this), *WaitError (the guest's sshd never became ready).
// A remote command's own non-zero status is not an error: Exec and Attach
// return it as the exit code.
package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Target is one sandbox's SSH endpoint and the credentials to reach it.
type Target struct {
	// Addr is host:port, normally 127.0.0.1 and the sandbox's forwarded port.
	Addr string
	// User is the guest account to log in as (normally "sandbox").
	User string
	// Signer is the client's private key.
	Signer ssh.Signer
	// HostKey is the sandbox's pinned host key; any other key is refused.
	HostKey ssh.PublicKey
}

func (t Target) validate() error {
	switch {
	case t.Addr == "":
		return errors.New("ssh target has no address")
	case t.User == "":
		return fmt.Errorf("ssh target %q has no user", t.Addr)
	case t.Signer == nil:
		return fmt.Errorf("ssh target %q has no client key", t.Addr)
	case t.HostKey == nil:
		return fmt.Errorf("ssh target %q has no pinned host key", t.Addr)
	}
	return nil
}

// HostKeyMismatchError means the server at Addr presented a host key other
// than the sandbox's pinned key: something else is listening on the port, or
// the sandbox's state was replaced. The connection is refused.
type HostKeyMismatchError struct {
	Addr   string
	Got    ssh.PublicKey
	Pinned ssh.PublicKey
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key of %s does not match the pinned key for the sandbox (got %s %s, pinned %s %s)",
		e.Addr, e.Got.Type(), ssh.FingerprintSHA256(e.Got), e.Pinned.Type(), ssh.FingerprintSHA256(e.Pinned))
}

// TransportError is a failure of the SSH connection itself, as opposed to the
// remote command: it could not be made, authentication failed, the host key
// did not match (Err is then a *HostKeyMismatchError), or it broke before the
// remote command reported its status. ssh(1) exits 255 in these cases.
type TransportError struct {
	Addr string
	Err  error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("ssh connection to %s failed: %v", e.Addr, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Dial opens an authenticated connection to t. The host key must be t.HostKey
// exactly, and only its algorithm is offered, so the server cannot steer the
// negotiation to another of its keys (dropbear also fails RSA negotiation with
// x/crypto; ed25519 works everywhere). ctx bounds the TCP connect and the
// whole handshake; once Dial returns, ctx no longer affects the connection.
// Errors are *TransportError, wrapping *HostKeyMismatchError on a mismatch.
func Dial(ctx context.Context, t Target) (*ssh.Client, error) {
	return dial(ctx, t, 0)
}

// DialBusy is Dial to a server that may drop a connection before the
// handshake: dropbear refuses a client's sixth unauthenticated connection (as
// when several commands connect at once, or while readiness probes it
// abandoned are still ending on a loaded machine). Such a drop is retried,
// after a growing pause, for a few seconds in all.
func DialBusy(ctx context.Context, t Target) (*ssh.Client, error) {
	for attempt := 1; ; attempt++ {
		c, err := Dial(ctx, t)
		if err == nil || attempt == 6 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// dial is Dial, giving up early when bannerWait > 0 and the server's
// identification line has not arrived within it: that is a connection hanging
// in qemu's forwarder while the guest's network is not up yet.
func dial(ctx context.Context, t Target, bannerWait time.Duration) (*ssh.Client, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback:   pinned(t.HostKey),
		HostKeyAlgorithms: hostKeyAlgorithms(t.HostKey),
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, &TransportError{Addr: t.Addr, Err: err}
	}
	if bannerWait > 0 {
		conn = &bannerConn{Conn: conn, wait: bannerWait}
	}
	// The handshake has no context of its own: closing the socket when ctx
	// ends is what interrupts it (a qemu user-net port accepts TCP long
	// before the guest's sshd answers, so a handshake can hang forever).
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	if !stop() {
		if err == nil {
			c.Close()
		}
		return nil, &TransportError{Addr: t.Addr, Err: fmt.Errorf("ssh handshake: %w", context.Cause(ctx))}
	}
	if err != nil {
		conn.Close()
		var mismatch *HostKeyMismatchError
		if errors.As(err, &mismatch) {
			err = mismatch // drop x/crypto's "ssh: handshake failed:" prefix
		}
		return nil, &TransportError{Addr: t.Addr, Err: err}
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// bannerConn bounds the wait for the first bytes from the server only.
type bannerConn struct {
	net.Conn
	wait time.Duration
	seen bool
}

func (c *bannerConn) Read(p []byte) (int, error) {
	if c.seen {
		return c.Conn.Read(p)
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.wait))
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.seen = true
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no SSH banner within %v", c.wait)
	}
	return n, err
}

// pinned wraps ssh.FixedHostKey to turn its untyped error into a
// *HostKeyMismatchError that callers can detect with errors.As.
func pinned(key ssh.PublicKey) ssh.HostKeyCallback {
	fixed := ssh.FixedHostKey(key)
	return func(hostname string, remote net.Addr, got ssh.PublicKey) error {
		if err := fixed(hostname, remote, got); err != nil {
			return &HostKeyMismatchError{Addr: hostname, Got: got, Pinned: key}
		}
		return nil
	}
}

// hostKeyAlgorithms lists the signature algorithms that can verify key. For
// RSA keys the type name is not an algorithm anyone should use (SHA-1), so
// the SHA-2 variants come first.
func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{key.Type()}
}

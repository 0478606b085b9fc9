package sshmux_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/ownersock"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"github.com/keystone-agent/keystone/internal/sshmux"
)

// connectEnv makes the test binary a client that another user runs: it
// connects to the socket named, asks for a session with the protocol's raw
// bytes (an attacker need not use this package) and prints what happened.
const connectEnv = "KEYSTONE_SSHMUX_TEST_CONNECT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(connectEnv); sock != "" {
		fmt.Println(connectRaw(sock))
		return
	}
	os.Exit(m.Run())
}

func connectRaw(sock string) string {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return "connect: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// A refusal may come (and the daemon close) before this is written.
	c.Write([]byte{'o', 0, 0, 0, 1, 1})
	h := make([]byte, 5)
	if _, err := c.Read(h); err != nil {
		return "read: " + err.Error()
	}
	return fmt.Sprintf("answer %q", h[0])
}

// A daemon killed with SIGKILL leaves its socket file; Dial must notice at
// once that nobody listens, so exec falls back instead of hanging, and the
// next daemon replaces the file.
func TestStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ssh.sock")
	l, err := ownersock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // as after SIGKILL: the file stays, nobody listens
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the stale socket file is gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = sshmux.Dial(ctx, sock, anyKey(t))
	var unavailable *sshmux.UnavailableError
	if !errors.As(err, &unavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial on a stale socket: %v; want an *UnavailableError wrapping ECONNREFUSED", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Dial waited for its context on a stale socket")
	}
	l, err = ownersock.Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	if _, err := sshmux.Dial(ctx, filepath.Join(t.TempDir(), "none.sock"), anyKey(t)); !errors.As(err, &unavailable) {
		t.Fatalf("Dial without a socket: %v; want an *UnavailableError", err)
	}
}

// A daemon that accepts and never answers (stopped, swapping) is given up on
// when the caller's context ends: Dial never hangs.
func TestSilentDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ssh.sock")
	l, err := ownersock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := sshmux.Dial(ctx, sock, anyKey(t)); done <- err }()
	select {
	case err := <-done:
		var unavailable *sshmux.UnavailableError
		if !errors.As(err, &unavailable) {
			t.Fatalf("Dial to a silent daemon: %v; want an *UnavailableError", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Dial to a silent daemon hangs")
	}
}

// The socket is the owner's alone: mode 0600, and a process of another uid
// that reaches it anyway (a loosened mode) is refused by its credentials.
func TestAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a second local user needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skipf("useradd is not installed: %v", err)
	}
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	other := throwawayUser(t)
	// A directory the other user can enter, holding the socket and a copy of
	// this test binary for it to run.
	dir, err := os.MkdirTemp("", "sshmux-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "client")
	if err := copyFile(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ssh.sock")
	d := daemonAt(t, srv.Target(), sock)
	st, err := os.Stat(sock)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket with mode 0600", st.Mode(), err)
	}
	asOther := func() string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), connectEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: other.uid, Gid: other.gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v: %s", other.uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := asOther(); !strings.Contains(got, "permission denied") {
		t.Errorf("another user connecting to the 0600 socket: %q; want permission denied", got)
	}
	os.Chmod(sock, 0o666)
	// Closed unanswered: EOF, or a reset when the daemon closed before
	// reading what the client had sent.
	if got := asOther(); got != "read: EOF" && !strings.HasSuffix(got, "connection reset by peer") {
		t.Errorf("another user connecting to a loosened socket: %q; want the connection closed unanswered", got)
	}
	if want := fmt.Sprintf("runs as uid %d, not %d", other.uid, os.Geteuid()); !strings.Contains(d.logs.String(), want) {
		t.Errorf("the daemon's log does not name the refused uid (%q):\n%s", want, d.logs)
	}
	// The owner still gets sessions.
	if r := run(t, d, sshconn.Command{Argv: []string{"true"}}); r.err != nil || r.code != 0 {
		t.Errorf("the owner's exec after the refusals = %d, %v", r.code, r.err)
	}
}

// anyKey is a host key for a Dial that never gets as far as checking it.
func anyKey(t *testing.T) ssh.PublicKey {
	_, pub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := sshconn.ParseHostKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The daemon's connection was checked against another key than the
// client's pin (the sandbox's key was replaced since): the client does not
// use it.
func TestAnotherPinIsNotUsed(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	d := daemon(t, srv.Target())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshmux.Dial(ctx, d.sock, anyKey(t))
	var unavailable *sshmux.UnavailableError
	if !errors.As(err, &unavailable) || !errors.Is(err, sshmux.ErrOtherPin) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial with another pin: %v; want an *UnavailableError wrapping ErrOtherPin", err)
	}
}

type localUser struct{ uid, gid uint32 }

// throwawayUser creates a system user without a home or a login shell, and
// removes it when the test ends.
func throwawayUser(t *testing.T) localUser {
	t.Helper()
	name := fmt.Sprintf("kstest%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return localUser{uint32(uid), uint32(gid)}
}

func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// A state directory deep enough that its socket path does not fit a socket
// address still serves sessions.
func TestLongSocketPath(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ssh.sock")
	d := daemonAt(t, srv.Target(), sock)
	if r := run(t, d, sshconn.Command{Argv: []string{"echo", "deep"}}); r.err != nil || r.stdout != "deep\n" {
		t.Fatalf("exec through %d-byte socket path = %d, %v, %q", len(sock), r.code, r.err, r.stdout)
	}
}

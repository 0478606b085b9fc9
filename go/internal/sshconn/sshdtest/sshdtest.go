// Package sshdtest starts real SSH servers on loopback for tests: Debian's
// OpenSSH sshd, and dropbear (the server in the Debian test guest). Each
// server gets a fresh host key, a fresh authorized client key and a random
// port on 127.0.0.1, and is stopped when the test ends.
//
// It never touches the machine's SSH configuration or anyone's home: sshd
// is given every path in a temporary config, and dropbear, which only reads
// ~/.ssh/authorized_keys of the login user, runs in a private mount
// namespace where a temporary directory is mounted over that home.
package sshdtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/sshconn"
)

// Paths of the servers, as Debian installs them (packages openssh-server
// and dropbear-bin).
const (
	SSHDPath     = "/usr/sbin/sshd"
	DropbearPath = "/usr/sbin/dropbear"
	// DropbearConvertPath converts OpenSSH keys to dropbear's format.
	DropbearConvertPath = "/usr/bin/dropbearconvert"
)

// Kind selects the server program.
type Kind string

const (
	OpenSSH  Kind = "openssh"
	Dropbear Kind = "dropbear"
)

// Server is one running SSH server.
type Server struct {
	Kind Kind
	Addr string
	// User is the account the client key may log in as.
	User string
	// HostKey is the server's public host key, to pin.
	HostKey ssh.PublicKey
	// Client is the authorized client key.
	Client ssh.Signer
	// Dir holds the server's files (keys, config) and is the login
	// user's HOME in every session, so tests never write to a real home.
	Dir string

	argv []string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// Target is what a client needs to reach s.
func (s *Server) Target() sshconn.Target {
	return sshconn.Target{Addr: s.Addr, User: s.User, Signer: s.Client, HostKey: s.HostKey}
}

// CanPTY reports whether the server can give sessions a PTY: OpenSSH's
// sshd running as a normal user drops them, because it cannot record the
// login ("Attempt to write login records by non-root user (aborting)").
func (s *Server) CanPTY() bool {
	return s.Kind != OpenSSH || os.Geteuid() == 0
}

// Log is what the server wrote to stderr so far.
func (s *Server) Log() string { return s.log.String() }

// Start runs a server of kind k on a free loopback port and waits until it
// answers. It skips the test, saying why, when the server program is not
// installed or (dropbear only) no private mount namespace can be made.
func Start(t testing.TB, k Kind) *Server {
	t.Helper()
	s := New(t, k, FreeAddr(t))
	s.Start(t)
	return s
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// New prepares a server of kind k on addr (keys, config) without starting
// it, so a test can hold its Target before the server runs.
func New(t testing.TB, k Kind, addr string) *Server {
	t.Helper()
	s := &Server{Kind: k, Addr: addr, Dir: t.TempDir(), log: &lockedBuffer{}, done: make(chan struct{})}
	hostKeyFile := s.writeKeys(t)
	switch k {
	case OpenSSH:
		s.argv = s.openSSH(t, hostKeyFile)
	case Dropbear:
		s.argv = s.dropbear(t, hostKeyFile)
	default:
		t.Fatalf("unknown server kind %q", k)
	}
	return s
}

// Start runs the prepared server and waits until it answers; it is stopped
// when the test ends.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// The server must not outlive a test binary that dies mid-test.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", s.Kind, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.Stop)
	s.awaitBanner(t)
}

// Stop ends the server and waits until it is gone. It is safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// writeKeys makes the host key and the client key, authorizes the client
// key, and returns the host key's path.
func (s *Server) writeKeys(t testing.TB) string {
	t.Helper()
	hostPriv, hostPub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	clientPriv, clientPub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if s.HostKey, err = sshconn.ParseHostKey(hostPub); err != nil {
		t.Fatal(err)
	}
	if s.Client, err = ssh.ParsePrivateKey(clientPriv); err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(s.Dir, "ssh_host_ed25519_key")
	if err := atomicfile.Write(hostKeyFile, hostPriv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, rsaHostKeyName), rsaHostKey(t), 0o600); err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(s.Dir, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), clientPub, 0o600); err != nil {
		t.Fatal(err)
	}
	return hostKeyFile
}

// rsaHostKeyName is a second host key every server offers, listed first, as
// a Debian or NixOS server has one: a client that does not restrict its
// host key algorithms to the pinned key's would negotiate RSA and fail.
const rsaHostKeyName = "ssh_host_rsa_key"

var rsaKeyOnce struct {
	sync.Once
	pem []byte
	err error
}

// rsaHostKey is made once per test binary: RSA key generation is slow.
func rsaHostKey(t testing.TB) []byte {
	t.Helper()
	rsaKeyOnce.Do(func() {
		var k *rsa.PrivateKey
		if k, rsaKeyOnce.err = rsa.GenerateKey(rand.Reader, 2048); rsaKeyOnce.err != nil {
			return
		}
		var block *pem.Block
		if block, rsaKeyOnce.err = ssh.MarshalPrivateKey(k, ""); rsaKeyOnce.err == nil {
			rsaKeyOnce.pem = pem.EncodeToMemory(block)
		}
	})
	if rsaKeyOnce.err != nil {
		t.Fatalf("cannot make an RSA host key: %v", rsaKeyOnce.err)
	}
	return rsaKeyOnce.pem
}

// openSSH writes an sshd config that names every file sshd would otherwise
// take from /etc, and returns the command line. Sessions get HOME=s.Dir, so
// a shell's history or any other dotfile a test causes lands there, not in
// the real home of the user running the tests.
func (s *Server) openSSH(t testing.TB, hostKeyFile string) []string {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("OpenSSH's sshd is not installed (%v): apt-get install openssh-server", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s.User = u.Username
	if os.Geteuid() == 0 {
		// Running as root, sshd insists on its privilege separation
		// directory, which systemd's tmpfiles would normally create.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("cannot create sshd's privilege separation directory: %v", err)
		}
	}
	config := fmt.Sprintf(`ListenAddress %s
HostKey %s
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin yes
StrictModes no
UsePAM no
PidFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
SetEnv HOME=%s
LogLevel VERBOSE
`, s.Addr, filepath.Join(s.Dir, rsaHostKeyName), hostKeyFile, filepath.Join(s.Dir, ".ssh", "authorized_keys"), s.Dir)
	configFile := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{SSHDPath, "-D", "-e", "-f", configFile}
}

// dropbear returns a command line that mounts s.Dir over root's home in a
// private mount namespace and runs dropbear there, logging in as root.
// Only root can do that: dropbear reads authorized_keys only from the login
// user's home, and in a user namespace it fails to change groups, so for
// anyone else it would have to use their real ~/.ssh, which a test must not.
func (s *Server) dropbear(t testing.TB, hostKeyFile string) []string {
	t.Helper()
	if _, err := os.Stat(DropbearPath); err != nil {
		t.Skipf("dropbear is not installed (%v): apt-get install dropbear-bin", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("dropbear tests run only as root: dropbear reads ~/.ssh/authorized_keys of the login user, and only root can give it a private home")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("dropbear needs unshare(1) to get a private home: %v", err)
	}
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	s.User = root.Username
	ns := []string{unshare, "--mount", "--propagation", "private"}
	probe := exec.Command(ns[0], append(ns[1:], "--", "mount", "--bind", s.Dir, root.HomeDir)...)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("dropbear needs a private mount namespace to get a private home, and cannot have one: %v: %s", err, bytes.TrimSpace(out))
	}
	// Debian 12's dropbear (2022.83) cannot read an OpenSSH-format host key
	// ("Early exit: String too long"); its own converter can.
	var keyArgs []string
	for _, k := range []string{filepath.Join(s.Dir, rsaHostKeyName), hostKeyFile} {
		convert := exec.Command(DropbearConvertPath, "openssh", "dropbear", k, k+".dropbear")
		if out, err := convert.CombinedOutput(); err != nil {
			t.Fatalf("cannot convert host key %q for dropbear: %v: %s", k, err, out)
		}
		keyArgs = append(keyArgs, "-r", k+".dropbear")
	}
	// "$1" and "$2" are positional parameters, not interpolated text.
	mountThenExec := `mount --bind "$1" "$2" && shift 2 && exec "$@"`
	argv := append(ns, "--", "/bin/sh", "-c", mountThenExec, "sh", s.Dir, root.HomeDir,
		DropbearPath, "-F", "-E", "-s", "-m", "-p", s.Addr, "-P", filepath.Join(s.Dir, "dropbear.pid"))
	return append(argv, keyArgs...)
}

// awaitBanner waits until the server sends its SSH version line.
func (s *Server) awaitBanner(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("%s exited before listening on %s: %v\n%s", s.Kind, s.Addr, s.cmd.ProcessState, s.Log())
		default:
		}
		if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			_, err := conn.Read(buf)
			conn.Close()
			if err == nil && string(buf) == "SSH-" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer on %s within 10s\n%s", s.Kind, s.Addr, s.Log())
}

// lockedBuffer collects the server's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

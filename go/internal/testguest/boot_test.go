package testguest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// TestBoot boots the real test guest with bin/microvm-run the way the
// helper does (docs/runner-contract.md), then checks what the sandbox
// promises: pinned-key SSH as the workspace owner, files written in
// /workspace owned by that user on the host, git in /workspace, a home that
// survives a restart, and a QMP shutdown that ends qemu within seconds.
func TestBoot(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package \"qemu-system-x86\")")
	}
	if testing.Short() {
		t.Skip("-short: no VM boots")
	}
	ctx := context.Background()
	start := time.Now()
	runner, err := Build(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build (shared cache): %v", time.Since(start).Round(time.Millisecond))

	vm := newTestVM(t, runner)
	vm.writeSessionFiles(t)
	client := vm.boot(t)
	vm.checkAgents(t, client)
	if got := vm.run(t, client, "id -u"); got != strconv.Itoa(vm.uid) {
		t.Errorf("id -u = %q; want %d", got, vm.uid)
	}
	vm.run(t, client, "echo from-guest > /workspace/hello")
	data, err := os.ReadFile(filepath.Join(vm.workspace, "hello"))
	if err != nil || string(data) != "from-guest\n" {
		t.Errorf("workspace/hello on the host = %q, %v; want \"from-guest\\n\"", data, err)
	}
	vm.checkOwner(t, filepath.Join(vm.workspace, "hello"))
	got := vm.run(t, client, "cd /workspace && git init -q && git add hello && "+
		"git -c user.name=Test -c user.email=test@example.com commit -q -m first && "+
		"git log --format=%s && git status --short")
	if got != "first" {
		t.Errorf("git log and status in the guest = %q; want \"first\" and a clean tree", got)
	}
	vm.checkOwner(t, filepath.Join(vm.workspace, ".git", "HEAD"))
	if got := vm.run(t, client, "test -e /run/keystone/ssh_host_ed25519_key && echo readable || echo gone"); got != "gone" {
		t.Errorf("the host key in the guest share is %s after boot; want it unmounted", got)
	}
	if err := vm.passwordLogin(); err == nil {
		t.Error("password login succeeded without password-auth in the guest dir")
	}
	vm.run(t, client, "echo kept > ~/mark")
	client.Close()
	vm.shutdown(t, "")

	writeFile(t, filepath.Join(vm.state, "guest", "password-auth"), nil, 0o644)
	client = vm.boot(t)
	if got := vm.run(t, client, "cat ~/mark"); got != "kept" {
		t.Errorf("~/mark after a restart = %q; want \"kept\"", got)
	}
	if err := vm.passwordLogin(); err != nil {
		t.Errorf("password login with password-auth: %v", err)
	}
	client.Close()
	vm.shutdown(t, "python3")

	// A stop right after a start, before acpid runs, must not be lost.
	vm.start(t)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(vm.state, "qmp.sock")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	vm.shutdownWithin(t, "", 3*time.Minute)
}

// TestBootRootOwner boots with a root-owned workspace, as when the helper
// runs as root: the sandbox user must then be uid 0 and still log in.
func TestBootRootOwner(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package \"qemu-system-x86\")")
	}
	if testing.Short() {
		t.Skip("-short: no VM boots")
	}
	if os.Getuid() != 0 {
		t.Skip("only root can own a workspace as root")
	}
	runner, err := Build(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	vm := newTestVM(t, runner)
	vm.uid, vm.gid = 0, 0
	vm.env = contractEnv(t, filepath.Dir(vm.state), vm.port, 0, 0)
	os.Chown(vm.workspace, 0, 0)
	client := vm.boot(t)
	if got := vm.run(t, client, "id -u; echo root-owned > /workspace/f"); got != "0" {
		t.Errorf("id -u = %q; want 0", got)
	}
	vm.checkOwner(t, filepath.Join(vm.workspace, "f"))
	client.Close()
	vm.shutdown(t, "")
}

// writeSessionFiles writes the per-start files as the helper does.
func (vm *testVM) writeSessionFiles(t *testing.T) {
	env, err := guestconf.EnvironmentFile(guestconf.Config{Name: "test-guest"})
	if err != nil {
		t.Fatal(err)
	}
	git, err := guestconf.GitConfig(guestconf.Identity{Name: "Ada Lovelace", Email: "ada@example.org", FromHost: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(vm.state, "guest", statedir.GuestEnvironment), env, 0o644)
	writeFile(t, filepath.Join(vm.state, "guest", statedir.GuestGitConfig), git, 0o644)
}

// checkAgents: the pinned agents and their runtime run from the read-only
// share, bash is the login shell, and the host's files reached the guest.
func (vm *testVM) checkAgents(t *testing.T, client *ssh.Client) {
	m, err := agents.Load()
	if err != nil {
		t.Fatal(err)
	}
	for cmd, want := range map[string]string{
		"claude --version": strings.TrimSuffix(m.Packages["claude-code"].Version, "-linux-x64"),
		"codex --version":  strings.TrimSuffix(m.Packages["codex"].Version, "-linux-x64"),
		"gemini --version": m.Packages["gemini-cli"].Version,
		"node --version":   "v" + m.Packages["node"].Version,
		"npm --version":    m.Packages["npm"].Version,
		"tmux -V":          "tmux ",
		"echo $SHELL; bash -c 'echo $BASH_VERSION'":                                                   "/bin/bash\n5.",
		". " + guestconf.EnvironmentPath + " && echo $IS_SANDBOX":                                     "1",
		"cd /workspace && git config user.name && git config user.email && git config commit.gpgsign": "Ada Lovelace\nada@example.org\nfalse",
		"touch /opt/keystone/agents/x 2>&1 || echo read-only":                                         "read-only",
	} {
		start := time.Now()
		got := vm.run(t, client, cmd)
		t.Logf("%s: %q in %v", cmd, got, time.Since(start).Round(time.Millisecond))
		if !strings.Contains(got, want) {
			t.Errorf("%s: got %q; want it to contain %q", cmd, got, want)
		}
	}
}

// testVM is one sandbox's files and its running runner.
type testVM struct {
	runner, state, workspace string
	uid, gid, port           int
	env                      []string
	hostKey                  ssh.PublicKey
	clientKey                ssh.Signer
	exited                   chan struct{} // closed when the current qemu exited
	starts                   int
}

func newTestVM(t *testing.T, runner string) *testVM {
	dir := t.TempDir()
	vm := &testVM{runner: runner, state: filepath.Join(dir, "state"), workspace: filepath.Join(dir, "workspace")}
	// The guest user takes the workspace owner's ids. As root, use another
	// owner, as a user would have: uid 0 in the guest would prove nothing.
	vm.uid, vm.gid = os.Getuid(), os.Getgid()
	if vm.uid == 0 {
		vm.uid, vm.gid = 4242, 4243
	}
	vm.port = freePort(t)
	vm.env = contractEnv(t, dir, vm.port, vm.uid, vm.gid)
	if os.Getuid() == 0 {
		if err := os.Chown(vm.workspace, vm.uid, vm.gid); err != nil {
			t.Fatal(err)
		}
	}
	guest := filepath.Join(vm.state, "guest")
	hostPEM, hostPub := newKey(t)
	vm.hostKey = hostPub
	clientPEM, clientPub := newKey(t)
	signer, err := ssh.ParsePrivateKey(clientPEM)
	if err != nil {
		t.Fatal(err)
	}
	vm.clientKey = signer
	writeFile(t, filepath.Join(guest, "ssh_host_ed25519_key"), hostPEM, 0o600)
	writeFile(t, filepath.Join(guest, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o644)
	return vm
}

func newKey(t *testing.T) ([]byte, ssh.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "keystone test")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sshPub
}

func writeFile(t *testing.T, name string, data []byte, perm os.FileMode) {
	if err := os.WriteFile(name, data, perm); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// boot starts the guest and waits for SSH.
func (vm *testVM) boot(t *testing.T) *ssh.Client {
	t.Helper()
	start := time.Now()
	vm.start(t)
	client, err := vm.awaitSSH(2 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to SSH: %v", time.Since(start).Round(time.Millisecond))
	return client
}

// start starts bin/microvm-run as the helper does.
func (vm *testVM) start(t *testing.T) {
	t.Helper()
	console, err := os.OpenFile(filepath.Join(vm.state, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	cmd := exec.Command(filepath.Join(vm.runner, runBin))
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = vm.state, vm.env, console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	vm.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	first := vm.starts == 0
	vm.starts++
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if first && t.Failed() { // the log holds every boot: print it once
			log, _ := os.ReadFile(filepath.Join(vm.state, "console.log"))
			t.Logf("console.log:\n%s", log)
		}
	})
}

// awaitSSH retries a full handshake with the pinned host key: qemu's
// user-net accepts TCP long before dropbear runs, so each attempt is short.
func (vm *testVM) awaitSSH(limit time.Duration) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		User:              "sandbox",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(vm.clientKey)},
		HostKeyCallback:   ssh.FixedHostKey(vm.hostKey),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.port))
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-vm.exited:
			return nil, fmt.Errorf("qemu exited while waiting for sshd (last attempt: %v)", last)
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			last = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		if err != nil {
			conn.Close()
			last = err
			var keyErr *ssh.ServerAuthError
			if errors.As(err, &keyErr) || strings.Contains(err.Error(), "host key mismatch") {
				return nil, err
			}
			continue
		}
		conn.SetDeadline(time.Time{})
		return ssh.NewClient(c, chans, reqs), nil
	}
	return nil, fmt.Errorf("sshd not ready at %s after %v (last attempt: %v)", addr, limit, last)
}

// passwordLogin logs in as sandbox with the password "sandbox" only.
func (vm *testVM) passwordLogin() error {
	cfg := &ssh.ClientConfig{
		User:              "sandbox",
		Auth:              []ssh.AuthMethod{ssh.Password("sandbox")},
		HostKeyCallback:   ssh.FixedHostKey(vm.hostKey),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.port)), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// run runs cmd in the guest and returns its trimmed stdout.
func (vm *testVM) run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if err := s.Run(cmd); err != nil {
		t.Fatalf("guest: %s: %v: %s", cmd, err, stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String())
}

func (vm *testVM) checkOwner(t *testing.T, name string) {
	t.Helper()
	fi, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != vm.uid || int(st.Gid) != vm.gid {
		t.Errorf("%s is owned by %d:%d on the host; want %d:%d", name, st.Uid, st.Gid, vm.uid, vm.gid)
	}
}

// shutdown runs bin/microvm-shutdown and waits for qemu to exit. With
// only set, the script finds nothing but that QMP client on its PATH.
func (vm *testVM) shutdown(t *testing.T, only string) {
	t.Helper()
	vm.shutdownWithin(t, only, 10*time.Second)
}

// onlyOnPath returns a PATH= setting under which prog is the only program,
// or false when prog is not installed.
func onlyOnPath(t *testing.T, prog string) (string, bool) {
	t.Helper()
	// /usr/bin first: a PATH shim (pyenv) would need more than the one program.
	path, err := exec.LookPath("/usr/bin/" + prog)
	if err != nil {
		path, err = exec.LookPath(prog)
	}
	if err != nil {
		return "", false
	}
	bin := t.TempDir()
	if err := os.Symlink(path, filepath.Join(bin, prog)); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + bin, true
}

// shutdownWithin is shutdown with its own bound: a guest asked to stop while
// it boots powers off at the end of its boot script, as long after as the
// boot takes (tens of seconds under TCG on a loaded machine).
func (vm *testVM) shutdownWithin(t *testing.T, only string, within time.Duration) {
	t.Helper()
	cmd := exec.Command(filepath.Join(vm.runner, shutdownBin))
	cmd.Dir, cmd.Env = vm.state, vm.env
	if only != "" {
		if path, ok := onlyOnPath(t, only); ok {
			cmd.Env = append(cmd.Env, path)
		} else {
			t.Logf("%s is not installed: shutting down with the default client", only)
		}
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("microvm-shutdown: %v: %s", err, out)
	}
	returned := time.Since(start)
	select {
	case <-vm.exited:
		t.Logf("shutdown: microvm-shutdown returned after %v, qemu exited after %v",
			returned.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	case <-time.After(within):
		t.Fatalf("qemu still runs %v after microvm-shutdown", within)
	}
}

package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/ptytest"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// fakeNix prints what a first `nix build` prints, then fails as a build
// without nixpkgs does.
const fakeNix = `#!/bin/sh
echo "these 2 derivations will be built:"
echo "  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1.0.drv"
echo "building '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1.0.drv'..." >&2
echo "hello> compiling hello.c" >&2
sleep 0.5
echo "error: builder for 'hello-1.0' failed with exit code 1" >&2
exit 1
`

// issue 13: progress on long work appears on a terminal only. `start`
// (clone, then nix build) with stderr on a PTY shows a redrawn line naming
// what nix builds and its last log line; in a pipe the same start prints
// plain lines and none of nix's chatter beyond the failure's tail.
func TestProgressOnlyOnATerminal(t *testing.T) {
	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "nix"), []byte(fakeNix), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "fake-kvm"), nil, 0o600)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("HOME", filepath.Join(work, "home"))
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_RUNTIME_DIR", testenv.RuntimeDir(t))
	t.Setenv("KEYSTONE_AGENT_DECLARED", filepath.Join(work, "none.json"))
	t.Setenv("KEYSTONE_AGENT_KVM_DEVICE", filepath.Join(work, "fake-kvm"))
	t.Setenv("TERM", "xterm")
	(&testenv.Env{Work: work}).Repo(t, "app")
	project := filepath.Join(work, "src", "app")

	start := func(stderr *os.File) int {
		env := &Env{Stdout: io.Discard, Stderr: stderr}
		return report(env, Run(context.Background(), env, []string{"start", project, "--no-attach"}))
	}

	p := ptytest.Open(t)
	p.Resize(t, 24, 200)
	if code := start(p.Slave); code != ExitBuildFailed {
		t.Fatalf("start on a terminal exited %d; want %d", code, ExitBuildFailed)
	}
	tty := readAvailable(t, p.Master)
	for _, want := range []string{
		"\r\x1b[KCloning " + project,
		"\r\x1b[KBuilding the MicroVM for \"app\"",
		"building hello-1.0 (1 of 2) · hello> compiling hello.c",
		"Failed to build MicroVM",
	} {
		if !strings.Contains(tty, want) {
			t.Errorf("the terminal lacks %q:\n%q", want, tty)
		}
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	code := start(w)
	w.Close()
	piped, _ := io.ReadAll(r)
	if code != ExitBuildFailed {
		t.Fatalf("start in a pipe exited %d; want %d", code, ExitBuildFailed)
	}
	if strings.ContainsAny(string(piped), "\r\x1b") || strings.Contains(string(piped), "(1 of 2)") {
		t.Errorf("the pipe got progress redraws:\n%q", piped)
	}
	if !strings.Contains(string(piped), "Building the MicroVM for \"app\"") || !strings.Contains(string(piped), "  | hello> compiling hello.c") {
		t.Errorf("the pipe lacks the plain lines or the failure's tail:\n%s", piped)
	}
}

// readAvailable reads what the terminal has shown so far.
func readAvailable(t *testing.T, master *os.File) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		master.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := master.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

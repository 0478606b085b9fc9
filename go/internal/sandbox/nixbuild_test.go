package sandbox_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// fakeNixBuildingTheTestGuest puts a `nix` first on PATH that stands in for
// `nix build`: it refuses a build source holding anything but the flake
// (what nix would copy into the store), records each build, and links the
// test guest as the runner.
func fakeNixBuildingTheTestGuest(t *testing.T, guest string) (builds string) {
	t.Helper()
	bin := t.TempDir()
	builds = filepath.Join(t.TempDir(), "builds")
	script := `#!/bin/sh
src=$(ls -A | tr '\n' ' ')
case "$src" in
"flake.nix " | "flake.lock flake.nix ") ;;
*) echo "fake nix: the build source $(pwd) holds: $src" >&2; exit 1 ;;
esac
echo "$(pwd -P): $src" >>` + builds + `
while [ $# -gt 0 ]; do [ "$1" = --out-link ] && ln -sfn ` + guest + ` "$2"; shift; done
`
	if err := os.WriteFile(filepath.Join(bin, "nix"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// the test guest needs no KVM; a nix-built runner is assumed to
	t.Setenv("KEYSTONE_AGENT_KVM_DEVICE", os.DevNull)
	return builds
}

// Issue 10, item 1: a nix-built sandbox killed with SIGKILL leaves its QMP
// socket, keys and var.img in state/; the next start builds from
// state/flake, which holds the flake alone, and boots.
func TestRestartAfterKillBuildsFromTheFlakeAlone(t *testing.T) {
	guest := testenv.Guest(t)
	builds := fakeNixBuildingTheTestGuest(t, guest)
	env := testenv.New(t)
	spec := sandbox.Spec{Project: env.Repo(t, "nixbuilt"), MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual"}
	sb, err := env.Env.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	execOut(t, sb, "sh", "-c", "echo kept > kept.txt")
	if link, _ := os.Readlink(sb.Dir.Path(statedir.FlakeFile)); link != filepath.Join(statedir.FlakeDir, statedir.FlakeFile) {
		t.Errorf("state/flake.nix links to %q; want flake/flake.nix", link)
	}
	pid, err := runner.ReadPID(sb.Dir.State())
	if err != nil || pid == 0 {
		t.Fatalf("pid file: %d, %v", pid, err)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Await(t, "the killed VM to be gone", 10*time.Second, func() string {
		if runner.Inspect(pid, sb.Dir.State()) != runner.Gone {
			return "got the runner still alive; want it gone"
		}
		return ""
	})
	if _, err := os.Stat(sb.Dir.Path(statedir.QMPSocket)); err != nil {
		t.Fatalf("the killed VM left no %s to test with: %v", statedir.QMPSocket, err)
	}
	// and a start killed while writing the flake leaves its temporary file
	if err := os.WriteFile(filepath.Join(sb.Dir.FlakeSource(), "."+statedir.FlakeFile+".tmp-4242"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	again, err := env.Env.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start after SIGKILL: %v", err)
	}
	if got := execOut(t, again, "cat", "kept.txt"); got != "kept\n" {
		t.Errorf("workspace after the restart: %q", got)
	}
	log, _ := os.ReadFile(builds)
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	src, _ := filepath.EvalSymlinks(sb.Dir.FlakeSource())
	if len(lines) != 2 {
		t.Fatalf("nix built %d times; want 2 (one per start):\n%s", len(lines), log)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, src+": ") {
			t.Errorf("nix built from %q; want %s", l, src)
		}
	}
}

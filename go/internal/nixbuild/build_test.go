package nixbuild

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// copyKeystoneFlake copies the repository's flake (flake.nix, flake.lock,
// lib/, modules/) into a fresh directory: the flake a packaged helper pins.
func copyKeystoneFlake(t *testing.T) string {
	t.Helper()
	root := filepath.Join("..", "..", "..")
	dst := t.TempDir()
	for _, f := range []string{"flake.nix", "flake.lock"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"lib", "modules"} {
		if err := os.CopyFS(filepath.Join(dst, d), os.DirFS(filepath.Join(root, d))); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// isolateNix gives nix a private HOME and store, and a proxy on a closed
// loopback port: every download fails at once, and no traffic leaves the machine.
func isolateNix(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	for _, v := range []string{"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} {
		t.Setenv(v, "http://127.0.0.1:9")
	}
	// a private chroot store: no root needed, nothing left in /nix/store
	t.Setenv("NIX_CONFIG", "download-attempts = 1\nsubstituters =\nflake-registry =\nstore = "+filepath.Join(home, "store"))
}

// A real `nix build` of a rendered flake, on a machine that cannot fetch
// nixpkgs: the typed error carries the tail of nix's output, build.log has
// all of it, and no runner link appears.
func TestBuildFailureIsTyped(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix not in PATH (Debian: apt-get install nix-bin)")
	}
	isolateNix(t)
	state := t.TempDir()
	flake, err := Render(Params{Name: "demo", Flake: "path:" + copyKeystoneFlake(t), System: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, statedir.FlakeFile), flake, 0o644); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runner, err := Build(ctx, state, &progress)
	if err == nil {
		t.Fatalf("Build succeeded (%s); want a failure: this machine cannot fetch nixpkgs", runner)
	}
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("Build error %T %v; want *BuildError", err, err)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Errorf("BuildError.Err = %v; want nix's *exec.ExitError", be.Err)
	}
	if len(be.Tail) == 0 || len(be.Tail) > TailLines {
		t.Fatalf("tail has %d lines; want 1..%d", len(be.Tail), TailLines)
	}
	last := be.Tail[len(be.Tail)-1]
	tail := strings.Join(be.Tail, "\n")
	t.Logf("tail of nix build:\n%s", tail)
	if !strings.Contains(tail, "error:") || !strings.Contains(tail, "nixpkgs") {
		t.Errorf("tail does not show nix's error about nixpkgs:\n%s", tail)
	}
	log, rerr := os.ReadFile(filepath.Join(state, statedir.BuildLog))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if be.Log != filepath.Join(state, statedir.BuildLog) || !strings.Contains(string(log), last) {
		t.Errorf("build.log (%s) lacks the last line %q:\n%s", be.Log, last, log)
	}
	if progress.String() != string(log) {
		t.Errorf("progress and build.log differ:\n%s\n---\n%s", progress.String(), log)
	}
	if !strings.Contains(err.Error(), "failed to build MicroVM") || !strings.Contains(err.Error(), be.Log) {
		t.Errorf("error %q does not say what failed and where the log is", err)
	}
	if _, err := os.Lstat(filepath.Join(state, statedir.RunnerLink)); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s: %v", statedir.RunnerLink, err)
	}
}

func TestBuildWithoutNix(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	state := t.TempDir()
	_, err := Build(context.Background(), state, nil)
	if !errors.Is(err, ErrNixNotFound) {
		t.Fatalf("Build error = %v; want ErrNixNotFound", err)
	}
	if !strings.Contains(err.Error(), `"nix"`) {
		t.Errorf("error %q does not name the missing program", err)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("Build without nix wrote %v into the state dir", entries)
	}
}

func TestBuildCancelled(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix not in PATH (Debian: apt-get install nix-bin)")
	}
	isolateNix(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Build(ctx, t.TempDir(), nil)
	var be *BuildError
	if !errors.As(err, &be) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Build error = %v; want a *BuildError wrapping context.Canceled", err)
	}
}

func TestTailWriter(t *testing.T) {
	tw := &tailWriter{max: 3}
	for _, chunk := range []string{"one\ntw", "o\n\nthree\rfour\n", "five", "\n  \nsix (partial)"} {
		tw.Write([]byte(chunk))
	}
	got := strings.Join(tw.lines(), "|")
	if want := "four|five|six (partial)"; got != want {
		t.Errorf("tail = %q; want %q", got, want)
	}
}

// nix's own words and a builder's log lines become one short status line.
func TestStatus(t *testing.T) {
	var got []string
	s := NewStatus(func(line string) { got = append(got, line) })
	out := "warning: Git tree is dirty\r\n" +
		"these 2 derivations will be built:\n" +
		"  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.drv\n" +
		"copying path '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-gcc-13.2.0' from 'https://cache.nixos.org'...\n" +
		"building '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.drv'...\n" +
		"linux> CC kernel/fo"
	s.Write([]byte(out))
	s.Write([]byte("rk.o\n" + strings.Repeat("x", 3*maxStatusLine) + "\n"))
	want := []string{
		"warning: Git tree is dirty",
		"warning: Git tree is dirty",
		"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.drv",
		"fetching gcc-13.2.0 · /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.drv",
		"building linux-6.6 (1 of 2) · /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.6.drv",
		"building linux-6.6 (1 of 2) · linux> CC kernel/fork.o",
		"building linux-6.6 (1 of 2) · " + strings.Repeat("x", maxStatusLine),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("statuses:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

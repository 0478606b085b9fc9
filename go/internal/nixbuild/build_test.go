package nixbuild

import (
	"bytes"
	"context"
	"errors"
	"net"
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
// loopback port: every download fails at once, and no traffic leaves the
// machine. It returns the private store's directory of store paths.
func isolateNix(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	for _, v := range []string{"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} {
		t.Setenv(v, "http://127.0.0.1:9")
	}
	// a private chroot store: no root needed, nothing left in /nix/store
	t.Setenv("NIX_CONFIG", "download-attempts = 1\nsubstituters =\nflake-registry =\nstore = "+filepath.Join(home, "store"))
	return filepath.Join(home, "store", "nix", "store")
}

// sandboxState makes a state directory as a sandbox that ran and was killed
// leaves it: secrets, the /var image, a pid file and a live QMP socket, with
// flake as state/flake/flake.nix.
func sandboxState(t *testing.T, flake []byte) string {
	t.Helper()
	state := t.TempDir()
	for name, data := range map[string]string{
		statedir.ClientKey: "CLIENT-PRIVATE-KEY",
		filepath.Join(statedir.GuestDir, statedir.HostKey): "HOST-PRIVATE-KEY",
		"var.img":          "VAR-IMAGE",
		statedir.PIDFile:   "4242\n",
		statedir.FlakeFile: "an old flake.nix of the layout before state/flake",
		statedir.FlakeLock: "{}",
	} {
		path := filepath.Join(state, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// a socket nix cannot copy, as a SIGKILLed qemu leaves it
	ln, err := net.Listen("unix", filepath.Join(state, statedir.QMPSocket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	src := filepath.Join(state, statedir.FlakeDir)
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, statedir.FlakeFile), flake, 0o644); err != nil {
		t.Fatal(err)
	}
	return state
}

// A real `nix build` of a rendered flake, on a machine that cannot fetch
// nixpkgs: the typed error carries the tail of nix's output, build.log has
// all of it, and no runner link appears.
func TestBuildFailureIsTyped(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix not in PATH (Debian: apt-get install nix-bin)")
	}
	store := isolateNix(t)
	flake, err := Render(Params{Name: "demo", Flake: "path:" + copyKeystoneFlake(t), System: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	state := sandboxState(t, flake)
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
	assertStoreHoldsOnlyFlake(t, store, flake)
}

// assertStoreHoldsOnlyFlake finds the copy nix made of the build source and
// checks that it is the flake alone: no key, no disk image, no socket.
func assertStoreHoldsOnlyFlake(t *testing.T, store string, flake []byte) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(store, "*-source"))
	found := 0
	for _, p := range paths {
		data, err := os.ReadFile(filepath.Join(p, statedir.FlakeFile))
		if err != nil || !bytes.Equal(data, flake) {
			continue
		}
		found++
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != statedir.FlakeFile && got != statedir.FlakeLock+" "+statedir.FlakeFile {
			t.Errorf("the store copy of the build source %s holds %q; want only flake.nix (and flake.lock)", p, got)
		}
	}
	if found == 0 {
		t.Fatalf("nix copied no build source holding the rendered flake into %s (%d *-source paths)", store, len(paths))
	}
	out, _ := exec.Command("grep", "-rl", "-e", "PRIVATE-KEY", "-e", "VAR-IMAGE", store).CombinedOutput()
	if len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("secrets of the state directory reached the store:\n%s", out)
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
	_, err := Build(ctx, sandboxState(t, []byte("{ }\n")), nil)
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

// fakeNix puts a `nix` first on PATH that records its working directory,
// what that directory holds, and its arguments, then makes the out-link.
func fakeNix(t *testing.T) (record string) {
	t.Helper()
	bin := t.TempDir()
	record = filepath.Join(t.TempDir(), "record")
	script := `#!/bin/sh
{ echo "cwd=$(pwd -P)"; echo "ls=$(ls -A | tr '\n' ' ')"; printf 'arg=%s\n' "$@"; } >` + record + `
while [ $# -gt 0 ]; do [ "$1" = --out-link ] && ln -s /nix/store/fake-runner "$2"; shift; done
`
	if err := os.WriteFile(filepath.Join(bin, "nix"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return record
}

// nix is given state/flake, which holds the flake alone, whatever else the
// state directory holds (keys, var.img, a socket left by a killed VM).
func TestBuildSourceIsTheFlakeAlone(t *testing.T) {
	record := fakeNix(t)
	state := sandboxState(t, []byte("{ outputs = _: { }; }\n"))
	link, err := Build(context.Background(), state, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.EvalSymlinks(filepath.Join(state, statedir.FlakeDir))
	for _, want := range []string{
		"cwd=" + src + "\n",
		"ls=flake.nix \n",
		"arg=--out-link\narg=" + filepath.Join(state, statedir.RunnerLink) + "\n",
		"arg=path:.#runner\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("nix was run with\n%s\nwant %q in it", got, want)
		}
	}
	if link != filepath.Join(state, statedir.RunnerLink) {
		t.Errorf("Build returned %q; want the runner link in state/", link)
	}
}

// Anything else in state/flake stops the build before nix runs: it would
// land in the store.
func TestBuildRefusesAForeignSource(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"a key", statedir.ClientKey},
		{"a temp file", statedir.FlakeFile + ".tmp"},
		{"a directory", "sub/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			record := fakeNix(t)
			state := sandboxState(t, []byte("{ }\n"))
			stray := filepath.Join(state, statedir.FlakeDir, tc.file)
			os.MkdirAll(filepath.Dir(stray), 0o700)
			if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Build(context.Background(), state, nil)
			if !errors.Is(err, ErrForeignSource) {
				t.Fatalf("Build error = %v; want ErrForeignSource", err)
			}
			if _, err := os.Stat(record); !os.IsNotExist(err) {
				t.Errorf("nix ran although the source held %s", tc.file)
			}
		})
	}
	t.Run("no flake", func(t *testing.T) {
		fakeNix(t)
		state := sandboxState(t, []byte("{ }\n"))
		os.Remove(filepath.Join(state, statedir.FlakeDir, statedir.FlakeFile))
		if _, err := Build(context.Background(), state, nil); err == nil || !strings.Contains(err.Error(), "no flake.nix") {
			t.Fatalf("Build error = %v; want one saying there is no flake.nix", err)
		}
	})
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

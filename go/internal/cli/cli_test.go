package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
	"github.com/keystone-agent/keystone/internal/testguest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keystone": func() { os.Exit(Main(os.Args[1:])) },
	})
}

// TestScripts runs the CLI transcripts in testdata/script. Scripts that boot
// a guest start with `[!vm] skip`; the vm condition holds when the Debian test
// guest could be built (qemu and the Debian packages are installed). Under CI
// the guest must build: a missing package fails the run instead of skipping.
func TestScripts(t *testing.T) {
	runnerDir, guestErr := buildGuest(t)
	runtimeDir := testenv.RuntimeDir(t)
	cache, _ := os.UserCacheDir() // the test guest's cache, shared with the scripts' HOMEs
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			home := filepath.Join(e.WorkDir, "home")
			e.Setenv("HOME", home)
			e.Setenv("XDG_CONFIG_HOME", "")
			e.Setenv("XDG_RUNTIME_DIR", runtimeDir)
			e.Setenv("XDG_CACHE_HOME", cache)
			e.Setenv("STATE", filepath.Join(home, ".config", "keystone", "agent"))
			e.Setenv("KEYSTONE_AGENT_DECLARED", filepath.Join(e.WorkDir, "no-declared.json"))
			e.Setenv("KEYSTONE_AGENT_RUNNER", "")
			e.Setenv("GUEST", runnerDir)
			// The pinned versions, for the agent transcripts.
			for name, v := range agentVersions {
				e.Setenv(name, v)
			}
			e.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(e.WorkDir, "gitconfig"))
			e.Setenv("GIT_AUTHOR_NAME", "Test")
			e.Setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
			e.Setenv("GIT_COMMITTER_NAME", "Test")
			e.Setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")
			// A failed script must not leave its VMs running, and shows the
			// ends of their console and host daemon logs.
			e.Defer(func() { stopAll(e.T(), filepath.Join(home, ".config", "keystone", "agent")) })
			return os.MkdirAll(home, 0o700)
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "vm":
				return guestErr == nil, nil
			case "nix":
				_, err := exec.LookPath("nix")
				return err == nil, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":   cmdExits,
			"mkrepo":  cmdMkrepo,
			"hidenix": cmdHideNix,
			"portof":  cmdPortof,
			"hostssh": cmdHostSSH,
		},
	})
}

// agentVersions names each pinned version as the programs print it.
var agentVersions = func() map[string]string {
	m, err := agents.Load()
	if err != nil {
		panic(err)
	}
	return map[string]string{
		"CLAUDE_VERSION": m.Packages["claude-code"].Version,
		"CODEX_VERSION":  strings.TrimSuffix(m.Packages["codex"].Version, "-linux-x64"),
		"GEMINI_VERSION": m.Packages["gemini-cli"].Version,
		"NODE_VERSION":   m.Packages["node"].Version,
	}
}()

// stopAll stops every sandbox registered under root.
func stopAll(t testscript.T, root string) {
	d := statedir.Dir(root)
	env := &sandbox.Env{Root: d, Registry: registry.New(d.Registry(), d.Lock())}
	testenv.StopAll(t.(testing.TB), env) // testscript.Run's T is a testing.TB
}

func buildGuest(t *testing.T) (string, error) {
	if testing.Short() {
		return "", errors.New("-short: no VM boots")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := testguest.Build(ctx, testguest.Options{})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the test guest must build under CI: %v", err)
		}
		t.Logf("skipping scripts that boot a guest: %v", err)
	}
	return dir, err
}

// exits N command args...: run a command and require exit status N (the
// script's `!` only means non-zero); stdout and stderr are kept for checks.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d; want %d", strings.Join(args[1:], " "), got, want)
	}
}

// mkrepo DIR [file content]...: a git repository with one commit made by the
// host's git, the trusted side.
func cmdMkrepo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args)%2 != 1 {
		ts.Fatalf("usage: mkrepo DIR [file content]...")
	}
	dir := ts.MkAbs(args[0])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ts.Fatalf("%v", err)
	}
	files := args[1:]
	if len(files) == 0 {
		files = []string{"README.md", "hello\n"}
	}
	for i := 0; i < len(files); i += 2 {
		p := filepath.Join(dir, files[i])
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			ts.Fatalf("%v", err)
		}
	}
	for _, argv := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "initial"}} {
		if err := ts.Exec("git", append([]string{"-C", dir}, argv...)...); err != nil {
			ts.Fatalf("git %s: %v", strings.Join(argv, " "), err)
		}
	}
}

// hidenix: from here on the script's PATH offers every program it did
// before except nix, as on a machine where Nix is not installed.
func cmdHideNix(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: hidenix")
	}
	bin := ts.MkAbs("nonix-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		ts.Fatalf("%v", err)
	}
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), "nix") {
				continue
			}
			os.Symlink(filepath.Join(dir, ent.Name()), filepath.Join(bin, ent.Name())) // the first on PATH wins
		}
	}
	ts.Setenv("PATH", bin)
}

// portof VAR: set $VAR to the host port of the first forward the last
// command printed ("127.0.0.1:PORT -> GUEST").
// cmdHostSSH is `exec ssh ARGS...` for the host's own OpenSSH client, except
// that a connection closed before the server's banner (OpenSSH says
// "kex_exchange_identification") is tried again, up to three times: the test
// guest's dropbear under TCG on a loaded CI machine has dropped one, and what
// these scripts test is the client's configuration (key, pin), which a
// closed connection never reaches. Any other failure is final.
func cmdHostSSH(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: hostssh ARGS... (use ! exec ssh for a failure)")
	}
	for attempt := 1; ; attempt++ {
		err := ts.Exec("ssh", args...)
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(ts.ReadFile("stderr"), "kex_exchange_identification") {
			ts.Fatalf("ssh: %v", err)
		}
		ts.Logf("ssh: the connection closed before the banner (attempt %d), again in a second", attempt)
		time.Sleep(time.Second)
	}
}

func cmdPortof(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: portof VAR")
	}
	m := regexp.MustCompile(`(?m)^127\.0\.0\.1:(\d+) -> \d+$`).FindStringSubmatch(ts.ReadFile("stdout"))
	if m == nil {
		ts.Fatalf("portof: no forward in stdout")
	}
	ts.Setenv(args[0], m[1])
}

package guestconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/statedir"
)

func TestEnvironmentFileIsSourceable(t *testing.T) {
	data, err := EnvironmentFile(Config{Name: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "environment")
	os.WriteFile(f, data, 0o644)
	out, err := exec.Command("sh", "-c", `. "$1" && printf '%s|%s|%s\n' "$KEYSTONE_SANDBOX" "$IS_SANDBOX" "$LANG"`, "sh", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "demo|1|C.UTF-8" {
		t.Fatalf("sourced: %q", got)
	}
}

func TestEnvironmentExtra(t *testing.T) {
	data, err := EnvironmentFile(Config{Name: "demo", Extra: []Var{{"HTTPS_PROXY", "http://10.0.2.100:3128"}}})
	if err != nil || !strings.HasSuffix(string(data), "export HTTPS_PROXY='http://10.0.2.100:3128'\n") {
		t.Fatalf("got %q, %v; want the extra variable last", data, err)
	}
	if _, err := EnvironmentFile(Config{Name: "demo", Extra: []Var{{"BAD NAME", "x"}}}); err == nil {
		t.Fatal("a bad extra name was accepted")
	}
}

func TestEnvironmentQuoting(t *testing.T) {
	// A sandbox name cannot hold a quote, but a future variable's value may.
	data, err := EnvironmentFile(Config{Name: `it's "$HOME" \n`})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "environment")
	os.WriteFile(f, data, 0o644)
	out, _ := exec.Command("sh", "-c", `. "$1" && printf '%s' "$KEYSTONE_SANDBOX"`, "sh", f).Output()
	if string(out) != `it's "$HOME" \n` {
		t.Fatalf("got %q", out)
	}
	if _, err := EnvironmentFile(Config{Name: "a\nb"}); err == nil {
		t.Fatal("a newline in a value was accepted")
	}
}

func TestGitConfigRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		{Name: "Ada Lovelace", Email: "ada@example.org", FromHost: true},
		{Name: `O"Brien \ #1; x`, Email: " lead@space ", FromHost: true},
		DefaultIdentity("demo"),
	} {
		data, err := GitConfig(id)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "gitconfig")
		os.WriteFile(f, data, 0o644)
		for key, want := range map[string]string{"user.name": id.Name, "user.email": id.Email, "commit.gpgsign": "false", "tag.gpgsign": "false"} {
			out, err := exec.Command("git", "config", "--file", f, "--get", key).Output()
			if err != nil || strings.TrimSuffix(string(out), "\n") != want {
				t.Errorf("%v: git reads %s = %q, %v; want %q", id, key, out, err, want)
			}
		}
		back, err := ReadIdentity(data)
		if err != nil || back != id {
			t.Errorf("read back %+v, %v; want %+v", back, err, id)
		}
	}
	if _, err := GitConfig(Identity{Name: "a\rb", Email: "x@y"}); err == nil {
		t.Error("a control character was accepted")
	}
	if _, err := ReadIdentity([]byte("[user]\n")); err == nil {
		t.Error("an empty identity was read")
	}
}

func TestDefaultIdentity(t *testing.T) {
	if got := DefaultIdentity("demo").String(); got != "keystone agent demo <demo@sandbox>" {
		t.Fatal(got)
	}
}

func TestHostIdentity(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "global")
	t.Setenv("GIT_CONFIG_GLOBAL", global)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "Not This") // git config does not read it
	repo := filepath.Join(dir, "repo")
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	os.MkdirAll(repo, 0o755)
	git("init", "-q")
	ctx := context.Background()

	id, err := HostIdentity(ctx, repo, "demo")
	if err != nil || id != DefaultIdentity("demo") {
		t.Fatalf("no identity: got %+v, %v; want the default", id, err)
	}

	os.WriteFile(global, []byte("[user]\n\tname = Global Person\n\temail = global@example.org\n"), 0o644)
	id, _ = HostIdentity(ctx, repo, "demo")
	if want := (Identity{Name: "Global Person", Email: "global@example.org", FromHost: true}); id != want {
		t.Fatalf("global: got %+v; want %+v", id, want)
	}

	// The project's own config (here through an include) wins, as git resolves it.
	inc := filepath.Join(dir, "work.inc")
	os.WriteFile(inc, []byte("[user]\n\temail = ada@work.example\n"), 0o644)
	git("config", "user.name", "Ada")
	git("config", "include.path", inc)
	id, _ = HostIdentity(ctx, repo, "demo")
	if want := (Identity{Name: "Ada", Email: "ada@work.example", FromHost: true}); id != want {
		t.Fatalf("project: got %+v; want %+v", id, want)
	}

	t.Setenv("KEYSTONE_AGENT_GIT", "/nonexistent/git")
	id, err = HostIdentity(ctx, repo, "demo")
	if err == nil || id != DefaultIdentity("demo") {
		t.Fatalf("no git: got %+v, %v; want the default and an error", id, err)
	}
}

// The NixOS guest (modules/agents.nix) copies the files to the same paths.
func TestNixGuestUsesThePaths(t *testing.T) {
	nix, err := os.ReadFile("../../../modules/agents.nix")
	if os.IsNotExist(err) {
		t.Skip("modules/ is outside this source tree (the flake's go-test check)")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`confDir = "` + GuestDir + `";`,
		`environmentFile = "${confDir}/` + filepath.Base(EnvironmentPath) + `";`,
		`gitConfigFile = "${confDir}/` + filepath.Base(GitConfigPath) + `";`,
		`for f in ` + statedir.GuestEnvironment + ` ` + statedir.GuestGitConfig + `; do`,
	} {
		if !strings.Contains(string(nix), want) {
			t.Errorf("modules/agents.nix lacks %q", want)
		}
	}
}

package agents

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmbeddedManifest(t *testing.T) {
	m, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Names(), " "); got != "claude codex gemini" {
		t.Errorf("agents: got %q; want claude codex gemini", got)
	}
	want := map[string]string{
		"claude": "claude --dangerously-skip-permissions",
		"codex":  "codex --dangerously-bypass-approvals-and-sandbox",
		"gemini": "gemini --yolo",
	}
	for name, argv := range want {
		a, err := m.Agent(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(a.Argv(), " "); got != argv {
			t.Errorf("%s: got %q; want %q", name, got, argv)
		}
	}
	// Gemini is a Node script: the runtime must be pinned beside it.
	if m.Packages["node"].Bin["node"] == "" {
		t.Error("no node runtime in the manifest")
	}
	if m.Packages["claude-code"].License != "unfree" {
		t.Error("Claude Code must be marked unfree: the NixOS side asks for consent")
	}
}

func TestUnknownAgent(t *testing.T) {
	m, _ := Load()
	_, err := m.Agent("cursor")
	var unknown *UnknownError
	if !errors.As(err, &unknown) || err.Error() != `unknown agent "cursor" (choose claude, codex, gemini)` {
		t.Fatalf("got %v; want an UnknownError listing the agents", err)
	}
}

func TestArgvIsACopy(t *testing.T) {
	a := Agent{Command: "x", Flags: []string{"--y"}}
	argv := a.Argv()
	argv[1] = "changed"
	if a.Flags[0] != "--y" {
		t.Fatal("Argv shares the manifest's flags")
	}
}

func TestParseRejects(t *testing.T) {
	const sri = "sha512-" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
	pkg := func(bin string) string {
		return `"p": {"npm": "p", "version": "1", "url": "https://registry.npmjs.org/p/-/p-1.tgz", "integrity": "` + sri + `", "bin": {` + bin + `}}`
	}
	good := `{"packages": {` + pkg(`"p": "bin/p"`) + `}, "agents": {"a": {"package": "p", "command": "p", "flags": ["--go"]}}}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	for name, tc := range map[string]struct{ json, want string }{
		"not json":        {`{`, "unexpected end"},
		"empty":           {`{}`, "no packages"},
		"foreign url":     {strings.Replace(good, "https://registry.npmjs.org/", "https://example.org/", 1), "is not on"},
		"md5 integrity":   {strings.Replace(good, sri, "md5-abc", 1), "not a sha512"},
		"escaping bin":    {strings.Replace(good, `"bin/p"`, `"../p"`, 1), "stay inside"},
		"absolute bin":    {strings.Replace(good, `"bin/p"`, `"/bin/p"`, 1), "stay inside"},
		"unclean bin":     {strings.Replace(good, `"bin/p"`, `"bin/../p"`, 1), "stay inside"},
		"missing package": {strings.Replace(good, `"package": "p"`, `"package": "q"`, 1), `no package "q"`},
		"missing command": {strings.Replace(good, `"command": "p"`, `"command": "q"`, 1), `no program "q"`},
		"bad flag":        {strings.Replace(good, `"--go"`, `"go"`, 1), "does not start with"},
		"bad program":     {strings.Replace(good, `"p": "bin/p"`, `"P x": "bin/p"`, 1), "program name"},
		"escaping home":   {strings.Replace(good, `"flags": ["--go"]`, `"flags": ["--go"], "home": {"../x": {}}`, 1), "stay inside the home"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSessionArgv(t *testing.T) {
	m, _ := Load()
	a, _ := m.Agent("claude")
	if got := strings.Join(a.StartArgv("/workspace"), " "); got != "tmux -u new-session -d -s keystone-agent -c /workspace -- claude --dangerously-skip-permissions" {
		t.Errorf("start: %q", got)
	}
	if got := strings.Join(a.AttachArgv("/workspace"), " "); got != "tmux -u new-session -A -s keystone-agent -c /workspace -- claude --dangerously-skip-permissions" {
		t.Errorf("attach: %q", got)
	}
	if got := strings.Join(AliveArgv(), " "); got != "tmux -u has-session -t =keystone-agent" {
		t.Errorf("alive: %q", got)
	}
}

func TestSeedArgv(t *testing.T) {
	m, _ := Load()
	codex, _ := m.Agent("codex")
	if codex.SeedArgv() != nil {
		t.Error("codex has no first-run files; want no seed command")
	}
	claude, _ := m.Agent("claude")
	home := t.TempDir()
	argv := claude.SeedArgv()
	run := func() {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("seed: %v %s", err, out)
		}
	}
	run()
	data, err := os.ReadFile(filepath.Join(home, ".claude.json"))
	if err != nil || !strings.Contains(string(data), `"/workspace":{"hasTrustDialogAccepted":true}`) || !strings.HasSuffix(string(data), "}\n") {
		t.Fatalf(".claude.json = %q, %v", data, err)
	}
	// The agent's own file (a login, say) is never replaced.
	os.WriteFile(filepath.Join(home, ".claude.json"), []byte("mine"), 0o600)
	run()
	if data, _ := os.ReadFile(filepath.Join(home, ".claude.json")); string(data) != "mine" {
		t.Fatalf("an existing file was replaced: %q", data)
	}
	gemini, _ := m.Agent("gemini")
	argv = gemini.SeedArgv()
	run()
	if data, _ := os.ReadFile(filepath.Join(home, ".gemini", "trustedFolders.json")); string(data) != `{"/workspace":"TRUST_FOLDER"}`+"\n" {
		t.Fatalf("trustedFolders.json = %q", data)
	}
}

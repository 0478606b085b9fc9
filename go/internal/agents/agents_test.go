package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/credentials"
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

// testLookup stands for the guest's session variables.
func testLookup(name string) (string, bool) {
	v, ok := map[string]string{"OPENAI_BASE_URL": "http://proxy.test/openai/v1"}[name]
	return v, ok
}

func TestHomeFiles(t *testing.T) {
	m, _ := Load()
	files, err := m.HomeFiles(testLookup)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	// every agent's, whichever runs in the session: exec runs the others
	if got := strings.Join(paths, " "); got != ".claude.json .codex/config.toml .gemini/settings.json .gemini/trustedFolders.json" {
		t.Fatalf("home files: %s", got)
	}
	home := t.TempDir()
	run := func(files []HomeFile) {
		argv := SeedArgv(files)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("seed: %v %s", err, out)
		}
	}
	read := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(home, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	run(files)
	if data := read(".claude.json"); !strings.Contains(data, `"/workspace":{"hasTrustDialogAccepted":true}`) || !strings.HasSuffix(data, "}\n") {
		t.Fatalf(".claude.json = %q", data)
	}
	if data := read(".gemini/trustedFolders.json"); data != `{"/workspace":"TRUST_FOLDER"}`+"\n" {
		t.Fatalf("trustedFolders.json = %q", data)
	}
	if data := read(".gemini/settings.json"); data != `{"security":{"auth":{"selectedType":"gemini-api-key"}}}`+"\n" {
		t.Fatalf("settings.json = %q", data)
	}
	// Codex's base URL is the session variable's value, not a second copy
	// of the proxy's address.
	if data := read(".codex/config.toml"); !strings.Contains(data, "\nopenai_base_url = \"http://proxy.test/openai/v1\"\n") || strings.Contains(data, "${") {
		t.Fatalf("config.toml = %q", data)
	}
	if st, _ := os.Stat(filepath.Join(home, ".codex/config.toml")); st.Mode().Perm() != 0o600 {
		t.Errorf("config.toml has mode %v; want 0600", st.Mode().Perm())
	}
	// The agent's own file (a login, say) is never replaced.
	os.WriteFile(filepath.Join(home, ".claude.json"), []byte("mine"), 0o600)
	run(files)
	if data := read(".claude.json"); data != "mine" {
		t.Fatalf("an existing file was replaced: %q", data)
	}
	if SeedArgv(nil) != nil {
		t.Error("no files: want no seed command")
	}
}

func TestHomeFilesRefuse(t *testing.T) {
	base := `{"packages":{"p":{"npm":"p","version":"1","url":"https://registry.npmjs.org/p.tgz","integrity":"sha512-` + strings.Repeat("A", 86) + `==","bin":{"a":"a"}}},
		"agents":{"a":{"package":"p","command":"a","flags":[],"home":%s}}}`
	for home, want := range map[string]string{
		`{"x.toml":{"k":1}}`:     "not a JSON string",
		`{"x.json":"text"}`:      "",
		`{"x.json":{"a":1}}`:     "",
		`{"../x":"t"}`:           "stay inside the home",
		`{"x.toml":"${NOPE}"}`:   "${NOPE} is not a variable",
		`{"x.toml":"$HOME \\$"}`: "",
	} {
		m, err := Parse([]byte(fmt.Sprintf(base, home)))
		if err == nil {
			_, err = m.HomeFiles(testLookup)
		}
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("home %s: got %v; want %q", home, err, want)
		}
	}
}

// Claude Code asks in its session whether to use an ANTHROPIC_API_KEY it
// has not seen, "No (recommended)" preselected, unless the key's last 20
// characters are approved in ~/.claude.json: the guest's key is always the
// proxy's placeholder, approved there.
func TestClaudeApprovesThePlaceholder(t *testing.T) {
	m, _ := Load()
	var cfg struct {
		CustomAPIKeyResponses struct{ Approved []string } `json:"customApiKeyResponses"`
	}
	if err := json.Unmarshal(m.Agents["claude"].Home[".claude.json"], &cfg); err != nil {
		t.Fatal(err)
	}
	p := credentials.Placeholder("ANTHROPIC_API_KEY")
	if want := p[len(p)-20:]; !slices.Equal(cfg.CustomAPIKeyResponses.Approved, []string{want}) {
		t.Fatalf("approved keys %q; want the placeholder's last 20 characters %q", cfg.CustomAPIKeyResponses.Approved, want)
	}
}

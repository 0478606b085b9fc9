package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// completionCase is a command line typed so far and what TAB must offer.
type completionCase struct {
	line string // up to the cursor; a trailing space starts a new word
	want []string
}

var completionCases = []completionCase{
	{"keystone ", []string{"agent", "start", "status", "ssh-config", "completion", "help"}},
	{"keystone agent st", []string{"start", "status", "stop"}},
	{"keystone status ", []string{"alpha", "beta"}},
	{"keystone agent attach b", []string{"beta"}},
	{"keystone agent start --network ", []string{"bridge", "macvtap", "tap", "user"}},
	{"keystone agent start --sync-mode auto-", []string{"auto-commit", "auto-idle"}},
	{"keystone agent start --egress ", []string{"allowlist", "none", "open"}},
	{"keystone allow a", []string{"alpha"}},
	{"keystone forward --", []string{"--background", "--cancel", "--help"}},
	{"keystone exec alpha -- ", nil},
	{"keystone completion ", []string{"bash", "fish", "zsh"}},
	{"keystone help ssh", []string{"ssh", "ssh-config"}},
}

// issue 13: the completion scripts load in real shells and offer verbs,
// flags, flag values and the registry's sandbox names.
func TestCompletionScripts(t *testing.T) {
	home := t.TempDir()
	root := statedir.Dir(filepath.Join(home, ".config", "keystone", "agent"))
	os.MkdirAll(string(root), 0o700)
	reg := registry.New(root.Registry(), root.Lock())
	if err := reg.Update(func(tx *registry.Tx) error {
		for _, n := range []string{"alpha", "beta"} {
			tx.Put(registry.Entry{Name: n, ProjectPath: "/src/" + n, MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual", SSHPort: 2223})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(home, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.Link(testenv.Keystone(t), filepath.Join(bin, "keystone")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME=", "PATH="+bin+":"+os.Getenv("PATH"),
		"KEYSTONE_AGENT_DECLARED="+filepath.Join(home, "none.json"))
	shells := map[string]func(*testing.T, []string, string) []string{
		"bash": bashComplete, "zsh": zshComplete, "fish": fishComplete,
	}
	for _, shell := range Shells {
		t.Run(shell, func(t *testing.T) {
			if _, err := exec.LookPath(shell); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s must be installed under CI (.ci/run)", shell)
				}
				t.Skipf("%s is not installed", shell)
			}
			for _, c := range completionCases {
				got := shells[shell](t, env, c.line)
				for _, w := range c.want {
					if !contains(got, w) {
						t.Errorf("%q offers %q; want %q among them", c.line, got, w)
					}
				}
				if c.want == nil && len(got) > 0 {
					t.Errorf("%q offers %q; want nothing", c.line, got)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func runShell(t *testing.T, env []string, argv ...string) []string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = t.TempDir() // no files to offer by mistake
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", argv[0], err, out)
	}
	var words []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			words = append(words, f[0]) // fish adds a tab and a description
		}
	}
	return words
}

// bashComplete calls the script's function as bash's completion would.
func bashComplete(t *testing.T, env []string, line string) []string {
	words := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		words = append(words, "")
	}
	script := `source <(keystone completion bash) || exit 1
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"
_keystone; printf '%s\n' "${COMPREPLY[@]}"`
	return runShell(t, env, append([]string{"bash", "-c", script, "bash"}, words...)...)
}

// zshComplete calls the script's function with zsh's completion builtins
// replaced by functions that print what they are given.
func zshComplete(t *testing.T, env []string, line string) []string {
	words := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		words = append(words, "")
	}
	script := `autoload -U compinit && compinit -u -d "$HOME/.zcompdump"
source <(keystone completion zsh) || exit 1
compadd() { while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; print -l -- "$@" }
_describe() { print -l -- ${${(P)4}%%:*} }
_files() { }
words=("$@"); CURRENT=$#
prefix=${words[CURRENT]}
_keystone | while read -r w; do [[ $w == "$prefix"* ]] && print -r -- $w; done; true`
	return runShell(t, env, append([]string{"zsh", "-fc", script, "zsh"}, words...)...)
}

// fishComplete asks fish itself: `complete -C` completes a command line.
func fishComplete(t *testing.T, env []string, line string) []string {
	return runShell(t, env, "fish", "--no-config", "-c", "keystone completion fish | source; complete -C $argv[1]", line)
}

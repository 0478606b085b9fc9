package cli

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"

	"github.com/spf13/pflag"

	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// Shells are the shells `completion` writes a script for.
var Shells = []string{"bash", "zsh", "fish"}

//go:embed completion
var completionScripts embed.FS

// What each verb's operands are, for completion; a verb not listed takes
// sandbox names.
var operands = map[string]string{
	"start":      "dir",
	"list":       "",
	"completion": "shell",
	"help":       "verb",
}

// Values offered for a flag's argument, by flag name; "dir" completes a
// directory.
var flagValues = map[string][]string{
	"network":   runner.Networks,
	"sync-mode": syncwatch.Modes,
	"runner":    {"dir"},
	"egress":    egress.Modes,
}

func newCompletionCmd() *verb {
	return &verb{
		name:    "completion",
		summary: "print a shell completion script (bash, zsh, fish)",
		usage: `Usage: keystone agent completion bash|zsh|fish   (or keystone completion SHELL)

Print the script that completes keystone's commands, options and sandbox
names in that shell. The Nix package installs all three; by hand:

  bash  source <(keystone completion bash)     (in ~/.bashrc)
  zsh   source <(keystone completion zsh)      (in ~/.zshrc, after compinit)
  fish  keystone completion fish > ~/.config/fish/completions/keystone.fish
`,
		run: runCompletion,
	}
}

func runCompletion(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	shell := fs.Arg(0)
	if _, err := completionScripts.Open("completion/keystone." + shell); shell == "" || err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("completion: which shell? one of %s", strings.Join(Shells, ", "))}
	}
	return writeCompletion(ctx, env.Stdout, shell)
}

// completionVerb is one verb as the scripts see it.
type completionVerb struct {
	Name, Summary string
	Flags         []completionFlag
	Operand       string // "names", "dir", "shell", "verb" or ""
}

type completionFlag struct {
	Name, Usage string
	Value       bool     // takes an argument
	Values      []string // offered arguments; ["dir"] for a directory
}

func writeCompletion(ctx context.Context, w io.Writer, shell string) error {
	tmpl, err := template.New("keystone."+shell).Funcs(template.FuncMap{
		"join": strings.Join, "zq": zshQuote, "fq": fishQuote,
	}).ParseFS(completionScripts, "completion/keystone."+shell)
	if err != nil {
		return err
	}
	return tmpl.Execute(w, completionVerbs(ctx))
}

// completionVerbs lists the visible verbs and help, each with the flags its
// own parser defines (asked with --help, so none can be left out).
func completionVerbs(ctx context.Context) []completionVerb {
	var out []completionVerb
	for _, v := range append(verbs(), &verb{name: "help", summary: "list the commands, or show one's options"}) {
		if v.hidden {
			continue
		}
		cv := completionVerb{Name: v.name, Summary: v.summary, Operand: "names"}
		if op, ok := operands[v.name]; ok {
			cv.Operand = op
		}
		if fs := verbFlags(ctx, v); fs != nil {
			fs.VisitAll(func(f *pflag.Flag) {
				cv.Flags = append(cv.Flags, completionFlag{Name: f.Name, Usage: f.Usage,
					Value: f.NoOptDefVal == "", Values: flagValues[f.Name]})
			})
		}
		out = append(out, cv)
	}
	return out
}

// verbFlags returns v's flags as its parser defines them.
func verbFlags(ctx context.Context, v *verb) *pflag.FlagSet {
	if v.run == nil {
		return nil
	}
	err := v.run(ctx, &Env{Stdout: io.Discard, Stderr: io.Discard}, v, []string{"--help"})
	var h *helpRequest
	if errors.As(err, &h) {
		return h.flags
	}
	return nil
}

// zshQuote makes s safe inside single quotes in a _describe item, where a
// colon would end the name.
func zshQuote(s string) string {
	return strings.NewReplacer(`'`, `'\''`, `:`, `\:`).Replace(s)
}

// fishQuote makes s safe inside fish's single quotes.
func fishQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

func newNamesCmd() *verb {
	return &verb{
		name:    "__names",
		hidden:  true,
		summary: "list sandbox names, for completion",
		usage:   "Usage: keystone agent __names\n\nPrint every sandbox's name, one a line, without inspecting any.\n",
		run:     runNames,
	}
}

// runNames reads the registry and the declared sandboxes only: it runs on
// every TAB, so it asks no VM and no SSH server anything.
func runNames(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	if err := parseArgs(fs, v, args, 0); err != nil {
		return err
	}
	sbe, err := env.Sandboxes()
	if err != nil {
		return err
	}
	all, err := sbe.List()
	if err != nil {
		return err
	}
	for _, sb := range all {
		fmt.Fprintln(env.Stdout, sb.Name)
	}
	return nil
}

// Package cli implements `keystone agent <verb>`: one file per verb, each
// parsing its flags, resolving the sandbox, calling one package and printing.
//
// Output policy: stdout carries results (tables, JSON); stderr carries
// progress, warnings, errors and hints. With --json, stdout is exactly one
// JSON value. Verbs return errors; only Main turns them into an exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/sandbox"
)

// Env is the process's outside world, passed explicitly so tests can capture it.
type Env struct {
	Stdin          *os.File
	Stdout, Stderr io.Writer
	// Sandboxes is built lazily: `help` needs no state directory.
	sandboxes *sandbox.Env
}

// Sandboxes returns the lifecycle environment of the current user.
func (e *Env) Sandboxes() (*sandbox.Env, error) {
	if e.sandboxes == nil {
		sb, err := sandbox.NewEnv(e.Stderr)
		if err != nil {
			return nil, err
		}
		e.sandboxes = sb
	}
	return e.sandboxes, nil
}

type verb struct {
	name    string
	summary string
	usage   string
	run     func(ctx context.Context, env *Env, v *verb, args []string) error
	hidden  bool
}

// verbs are every verb, in the order `help` lists them (the guide's).
func verbs() []*verb {
	return []*verb{
		newStartCmd(), newStopCmd(), newAttachCmd("attach"), newAttachCmd("ssh"), newExecCmd(),
		newSyncCmd(), newStatusCmd(), newListCmd(), newDestroyCmd(), newForwardCmd(), newSSHConfigCmd(),
		newAllowCmd(), newCompletionCmd(), newHostdCmd(), newPrepareGuestCmd(), newProxyRelayCmd(), newNamesCmd(),
	}
}

// lookup returns the verb called name, or nil.
func lookup(name string) *verb {
	for _, v := range verbs() {
		if v.name == name {
			return v
		}
	}
	return nil
}

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return report(env, Run(ctx, env, args))
}

// Run executes one command line (without the program name).
func Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintln(env.Stdout, versionLine())
		return nil
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if v := lookup(args[1]); v != nil {
				// The same text as `<verb> --help`: usage and options.
				return v.run(ctx, env, v, []string{"--help"})
			}
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("unknown command %q", args[1]), Hint: "`keystone agent help` lists the commands"}
		}
		fmt.Fprint(env.Stdout, mainUsage())
		if len(args) == 0 {
			return &ExitError{Code: ExitUsage, Quiet: true}
		}
		return nil
	}
	v := lookup(args[0])
	if v == nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("unknown command %q", args[0]), Hint: "`keystone agent help` lists the commands"}
	}
	return v.run(ctx, env, v, args[1:])
}

func report(env *Env, err error) int {
	if err == nil {
		return ExitOK
	}
	var h *helpRequest
	if errors.As(err, &h) {
		fmt.Fprint(env.Stdout, h.usage)
		return ExitOK
	}
	ee := classify(err)
	if !ee.Quiet && ee.Err != nil {
		fmt.Fprintf(env.Stderr, "keystone: %s\n", printableLines(ee.Err.Error()))
		var d detailer
		if errors.As(ee.Err, &d) {
			for _, line := range strings.Split(strings.TrimRight(d.Detail(), "\n"), "\n") {
				fmt.Fprintf(env.Stderr, "  | %s\n", gitsync.Printable(line))
			}
		}
		if ee.Hint != "" {
			fmt.Fprintf(env.Stderr, "keystone: hint: %s\n", ee.Hint)
		}
	}
	return ee.Code
}

// printableLines escapes the control characters of each line of s (an error
// can carry the sandbox's text: a path git names, the guest's console), so
// none reaches the terminal as an escape sequence; the lines stay lines.
func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = gitsync.Printable(l)
	}
	return strings.Join(lines, "\n")
}

// detailer is an error with more lines to show (a log's tail).
type detailer interface {
	error
	Detail() string
}

// detailed is an error line with lines to show under it.
type detailed struct {
	msg, detail string
}

func (d *detailed) Error() string  { return d.msg }
func (d *detailed) Detail() string { return d.detail }

func mainUsage() string {
	var b strings.Builder
	b.WriteString("Usage: keystone agent <command> [arguments]\n\nRun AI coding agents in isolated microVM sandboxes.\n\nCommands:\n")
	for _, v := range verbs() {
		if !v.hidden {
			fmt.Fprintf(&b, "  %-10s %s\n", v.name, v.summary)
		}
	}
	b.WriteString("\nRun `keystone agent help <command>` for its options.\n")
	return b.String()
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(v *verb) *pflag.FlagSet {
	fs := pflag.NewFlagSet(v.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// parse parses args and turns pflag's errors into usage errors.
func parse(fs *pflag.FlagSet, v *verb, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage := v.usage
			if fs.HasAvailableFlags() {
				usage += "\nOptions:\n" + flagUsages(fs)
			}
			return &helpRequest{usage: usage, flags: fs}
		}
		return &ExitError{Code: ExitUsage, Err: err, Hint: fmt.Sprintf("`keystone agent help %s` shows the options", v.name)}
	}
	return nil
}

// flagUsages lists the options. pflag prints a switch as --fresh[=true|false];
// shown through switchValue it is plain --fresh, as the guide writes it.
func flagUsages(fs *pflag.FlagSet) string {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Value.Type() == "bool" {
			f.Value = switchValue{f.Value}
		}
	})
	return fs.FlagUsages()
}

// switchValue is a bool flag without pflag's IsBoolFlag, so its usage line
// names no value; its NoOptDefVal ("true") still lets it stand alone.
type switchValue struct{ pflag.Value }

// helpRequest is --help: the verb's usage and, for completion, its flags.
type helpRequest struct {
	usage string
	flags *pflag.FlagSet
}

func (h *helpRequest) Error() string { return h.usage }

// parseArgs parses args and allows at most max positional arguments.
func parseArgs(fs *pflag.FlagSet, v *verb, args []string, max int) error {
	if err := parse(fs, v, args); err != nil {
		return err
	}
	return maxArgs(v, fs.Args(), max)
}

// maxArgs refuses extra positional arguments.
func maxArgs(v *verb, args []string, n int) error {
	if len(args) > n {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: unexpected argument %q", v.name, args[n]), Hint: "usage: " + strings.TrimSpace(strings.SplitN(v.usage, "\n", 2)[0])}
	}
	return nil
}

// resolve finds the sandbox named by args[0], or the current project's.
func resolve(env *Env, args []string) (*sandbox.Env, *sandbox.Sandbox, error) {
	sbe, err := env.Sandboxes()
	if err != nil {
		return nil, nil, err
	}
	var sb *sandbox.Sandbox
	if len(args) > 0 {
		sb, err = sbe.Get(args[0])
	} else {
		sb, err = sbe.ForProject(".")
	}
	return sbe, sb, err
}

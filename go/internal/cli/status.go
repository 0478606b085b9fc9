package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

func newStatusCmd() *verb {
	return &verb{
		name:    "status",
		summary: "show the state of a sandbox",
		usage: `Usage: keystone agent status [name] [--json]

Show a sandbox's state (running, stopped, or error with the reason),
derived from evidence: the VM process and SSH answering. The name defaults
to the current project's sandbox.
`,
		run: runStatus,
	}
}

func runStatus(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	r := sbe.Report(ctx, sb)
	if *asJSON {
		return printJSON(env.Stdout, r)
	}
	if err := printStatus(env.Stdout, r.Status); err != nil {
		return err
	}
	printSync(env.Stdout, r.Sync)
	printEgress(env.Stdout, r.Egress.Settings)
	printRefused(env.Stdout, r.Egress.Refused)
	forwards := make([]string, len(r.Forwards))
	for i, f := range r.Forwards {
		forwards[i] = f.String()
	}
	printLabeled(env.Stdout, "Forwards:", forwards)
	return nil
}

func printRefused(w io.Writer, refused []proxy.Refusal) {
	lines := make([]string, len(refused))
	for i, r := range refused {
		lines[i] = fmt.Sprintf("%s (%s; %d times, last %s)", r.Target, r.Reason, r.Count, r.Last.Local().Format("2006-01-02 15:04:05"))
	}
	printLabeled(w, "Refused:", lines)
}

// printLabeled prints lines under one label, as status aligns them.
func printLabeled(w io.Writer, label string, lines []string) {
	for i, l := range lines {
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-11s %s\n", label, l)
	}
}

func printSync(w io.Writer, st *syncwatch.Status) {
	if st == nil {
		return
	}
	last := "never"
	if !st.LastSync.IsZero() {
		result := st.LastResult
		if st.LastError != "" {
			result += ": " + gitsync.Printable(st.LastError) // names sandbox objects and paths
		}
		last = fmt.Sprintf("%s (%s)", st.LastSync.Local().Format("2006-01-02 15:04:05"), result)
	}
	pending := fmt.Sprintf("%d commits not on the host yet", st.PendingCommits)
	if st.PendingError != "" {
		pending = "not counted: " + gitsync.Printable(st.PendingError)
	}
	fmt.Fprintf(w, "Last sync:  %s\nPending:    %s\n", last, pending)
	if st.Paused {
		fmt.Fprintf(w, "Auto sync:  paused: %s\n", gitsync.Printable(st.PausedReason)) // names sandbox files
		for _, c := range st.Commands {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
}

package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/keystone-agent/keystone/internal/forward"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

func init() {
	register(&verb{
		name:    "status",
		summary: "show the state of a sandbox",
		usage: `Usage: keystone agent status [name] [--json]

Show a sandbox's state (running, stopped, or error with the reason),
derived from evidence: the VM process and SSH answering. The name defaults
to the current project's sandbox.
`,
		run: runStatus,
	})
}

func runStatus(ctx context.Context, env *Env, args []string) error {
	v := verbs["status"]
	fs := newFlags(v)
	asJSON := fs.Bool("json", false, "output as JSON")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	sbe, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	out := statusOutput{Status: sbe.Inspect(sb), Sync: syncState(ctx, sb)}
	if out.State == sandbox.Running {
		out.Forwards = backgroundForwards(ctx, sb)
	}
	if *asJSON {
		return printJSON(env.Stdout, out)
	}
	if err := printStatus(env.Stdout, out.Status); err != nil {
		return err
	}
	printSync(env.Stdout, out.Sync)
	for i, f := range out.Forwards {
		label := "Forwards:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(env.Stdout, "%-11s %s\n", label, f)
	}
	return nil
}

// statusOutput is `status --json`: the fields `list --json` prints for each
// sandbox, plus its sync state (which costs a dry-run sync, so list omits it).
type statusOutput struct {
	sandbox.Status
	Sync *syncwatch.Status `json:"sync,omitempty"`
	// Forwards are the background port forwards (`forward --background`).
	Forwards []forward.Spec `json:"forwards,omitempty"`
}

// syncState is the last sync recorded in state/sync.json, with the pending
// commits counted now.
func syncState(ctx context.Context, sb *sandbox.Sandbox) *syncwatch.Status {
	st, err := syncwatch.ReadStatus(sb.Dir.State())
	if err != nil {
		return nil
	}
	if n, err := syncwatch.Pending(ctx, gitsyncOptions(sb)); err == nil {
		st.PendingCommits = n
	}
	return &st
}

func printSync(w io.Writer, st *syncwatch.Status) {
	if st == nil {
		return
	}
	last := "never"
	if !st.LastSync.IsZero() {
		last = fmt.Sprintf("%s (%s)", st.LastSync.Local().Format("2006-01-02 15:04:05"), st.LastResult)
	}
	fmt.Fprintf(w, "Last sync:  %s\nPending:    %d commits not on the host yet\n", last, st.PendingCommits)
	if st.Paused {
		fmt.Fprintf(w, "Auto sync:  paused: %s\n", st.PausedReason)
		for _, c := range st.Commands {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
}

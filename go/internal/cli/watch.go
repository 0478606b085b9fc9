package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// IdleEnv configures the quiet time of the auto-idle sync mode (a Go duration).
const IdleEnv = "KEYSTONE_AGENT_SYNC_IDLE"

func init() {
	register(&verb{
		name:    "watch",
		hidden:  true,
		summary: "run the sync watcher of an auto-commit or auto-idle sandbox",
		usage: `Usage: keystone agent watch <name> [--idle DURATION] [--interval DURATION]

Started by ` + "`start`" + ` for the auto-commit and auto-idle sync modes, detached, and
stopped by ` + "`stop`" + `; it also ends by itself, after a last sync, once the
sandbox's VM is gone. The idle time defaults to $` + IdleEnv + ` or 30s.
`,
		run: runWatch,
	})
}

func runWatch(ctx context.Context, env *Env, args []string) error {
	v := verbs["watch"]
	fs := newFlags(v)
	idle := syncwatch.DefaultIdle
	if s := os.Getenv(IdleEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s=%q is not a positive duration such as 30s", IdleEnv, s)}
		}
		idle = d
	}
	fs.DurationVar(&idle, "idle", idle, "auto-idle: quiet time before a sync")
	interval := fs.Duration("interval", syncwatch.DefaultInterval, "how often the workspace is looked at")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("watch: a sandbox name is required")}
	}
	_, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	state := sb.Dir.State()
	started := time.Now()
	seen := false
	alive := func() bool {
		up := sandbox.VMAlive(sb)
		seen = seen || up
		// Started alongside the VM: give it time to write its pid file.
		return up || (!seen && time.Since(started) < time.Minute)
	}
	fmt.Fprintf(env.Stderr, "%s watching %q (%s)\n", time.Now().Format(time.RFC3339), sb.Name, sb.SyncMode)
	return syncwatch.Watch(ctx, syncwatch.Options{
		Sync:     gitsyncOptions(sb),
		StateDir: state, Mode: sb.SyncMode, Idle: idle, Interval: *interval, Alive: alive,
	}, func(ev syncwatch.Event) {
		switch {
		case ev.Err != nil:
			fmt.Fprintf(env.Stderr, "%s sync: %v\n", ev.Time.Format(time.RFC3339), ev.Err)
		case ev.Report != nil:
			fmt.Fprintf(env.Stderr, "%s sync: %s, %d commits\n", ev.Time.Format(time.RFC3339), ev.Report.Result, len(ev.Report.Commits))
		}
	})
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/announce"
	"github.com/keystone-agent/keystone/internal/forward"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshmux"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

// IdleEnv configures the quiet time of the auto-idle sync mode (a Go duration).
const IdleEnv = "KEYSTONE_AGENT_SYNC_IDLE"

func newHostdCmd() *verb {
	return &verb{
		name:    "hostd",
		hidden:  true,
		summary: "run the host daemon of a sandbox (its host-side services)",
		usage: `Usage: keystone agent hostd <name> [--idle DURATION] [--interval DURATION] [--state-dir DIR] [--credentials FILE]
       [--console-from BYTES] [--ready-timeout DURATION]

Started by ` + "`start`" + ` for every sandbox, detached, and stopped by ` + "`stop`" + `;
declared sandboxes run it as the unit keystone-agent-hostd-<name>. It runs the
sandbox's host-side services (the SSH connection that exec and attach use,
the proxy that is the guest's way out and adds its API keys, the sync
watcher of the auto-commit and auto-idle sync modes, background port
forwards) and ends by itself, after a last sync, once the sandbox's VM is
gone. The idle time defaults to $` + IdleEnv + ` or 30s. Credentials come from
the ` + "`start`" + ` that launched it (a pipe) and from --credentials FILE.
--console-from is where this boot begins in state/console.log (default: its
end); --ready-timeout bounds the wait for the first SSH connection (start
passes its own; default: keep trying while the VM runs).
`,
		run: runHostd,
	}
}

func runHostd(ctx context.Context, env *Env, v *verb, args []string) error {
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
	stateDir := fs.String("state-dir", "", "the state directory (default: the user's)")
	credsFile := fs.String("credentials", "", "a credentials file (NAME=value lines, mode 0600 or stricter)")
	consoleFrom := fs.Int64("console-from", -1, "offset in state/console.log where this boot begins (-1: its end)")
	readyTimeout := fs.Duration("ready-timeout", 0, "give up when the first SSH connection takes longer (0: keep trying while the VM runs)")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if *stateDir != "" {
		env.sandboxes = sandbox.NewEnvAt(statedir.Dir(*stateDir), env.Stderr)
	}
	if _, err := env.Sandboxes(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("hostd: a sandbox name is required")}
	}
	_, sb, err := resolve(env, fs.Args())
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(env.Stderr, "%s %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
	target, err := sb.Target()
	if err != nil {
		return err
	}
	console := sb.Dir.Path(statedir.ConsoleLog)
	if *consoleFrom < 0 {
		*consoleFrom = announce.End(console)
	}
	creds, err := daemonCredentials(*credsFile, logf)
	if err != nil {
		return err
	}
	egressProxy, err := proxyService(env.sandboxes, sb, creds, logf)
	if err != nil {
		return err
	}
	// Each service of the sandbox, one line each.
	services := []hostd.Service{egressProxy}
	services = append(services, &sshmux.Service{Target: target, Socket: sb.Dir.Path(statedir.SessionSocket),
		Console: console, ConsoleFrom: *consoleFrom, FirstTimeout: *readyTimeout, Logf: logf})
	if syncwatch.Watched(sb.SyncMode) {
		services = append(services, &syncwatch.Service{
			Options: syncwatch.Options{Sync: sb.GitSync(), StateDir: sb.Dir.State(),
				Mode: sb.SyncMode, Idle: idle, Interval: *interval},
			OnEvent: func(ev syncwatch.Event) {
				switch {
				case ev.Err != nil:
					logf("sync: %v", ev.Err)
				case ev.Report != nil:
					logf("sync: %s, %d commits", ev.Report.Result, len(ev.Report.Commits))
				}
			},
		})
	}
	// Background port forwards (`forward --background`): every sandbox.
	services = append(services, &forward.Service{
		Socket: sb.Dir.Path(statedir.ForwardSocket),
		Conn:   &forward.Conn{Dial: func(ctx context.Context) (*ssh.Client, error) { return sb.Dial(ctx) }},
		Logf:   func(format string, args ...any) { logf("forward: "+format, args...) },
	})
	logf("host daemon of %q: %d services", sb.Name, len(services))
	pipe := openReadyPipe()
	err = hostd.Run(ctx, hostd.Options{
		Services: services,
		Alive:    func() bool { return sandbox.VMAlive(sb) },
		Ready:    pipe.ready,
		Log:      env.Stderr,
	})
	var notReady *hostd.ErrNotReady
	if errors.As(err, &notReady) {
		pipe.failed(notReady)
	}
	return err
}

// readyPipe tells the launching `start` whether the daemon became ready,
// through the descriptor named by hostd.ReadyFDEnv: one line, then close.
type readyPipe struct{ f *os.File }

func openReadyPipe() *readyPipe {
	fd, err := strconv.Atoi(os.Getenv(hostd.ReadyFDEnv))
	if err != nil || fd < 3 {
		return &readyPipe{}
	}
	os.Unsetenv(hostd.ReadyFDEnv) // not inherited by anything the services start
	return &readyPipe{f: os.NewFile(uintptr(fd), "ready")}
}

func (p *readyPipe) ready() { p.send(hostd.ReadyMessage) }

func (p *readyPipe) failed(err error) {
	p.send(hostd.FailedPrefix + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
}

func (p *readyPipe) send(line string) {
	if p.f != nil {
		p.f.WriteString(line)
		p.f.Close()
		p.f = nil
	}
}

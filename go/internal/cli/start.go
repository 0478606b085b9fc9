package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/names"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

func newStartCmd() *verb {
	return &verb{
		name:    "start",
		summary: "clone a project into a sandbox, boot it and attach",
		usage: `Usage: keystone agent start [path] [options]

Clone the project's committed history into a sandbox workspace, build and
boot the sandbox, wait for SSH and attach at /workspace. With --agent, the
agent runs in a tmux session in the guest, and attach joins it; the choice
is remembered for the sandbox.

Exit codes: 0 success, 1 not a git repository, 2 sandbox already running,
3 build failed, 4 KVM not available, 64 bad option or value.
`,
		run: runStart,
	}
}

func runStart(ctx context.Context, env *Env, v *verb, args []string) error {
	// First: nothing this process starts (nix, the VM, git) may inherit a key.
	creds := credentials.TakeEnv()
	fs := newFlags(v)
	spec := sandbox.Spec{}
	fs.StringVar(&spec.Name, "name", "", "custom sandbox name (default: directory name)")
	fs.IntVar(&spec.MemoryMB, "memory", sandbox.DefaultMemoryMB, "RAM in MB (minimum 2048)")
	fs.IntVar(&spec.VCPUs, "vcpus", sandbox.DefaultVCPUs, "virtual CPUs (minimum 1)")
	noNested := fs.Bool("no-nested", false, "disable nested virtualization")
	fs.BoolVar(&spec.Fresh, "fresh", false, "discard previous state")
	noAttach := fs.Bool("no-attach", false, "don't attach after starting")
	fs.StringVar(&spec.Network, "network", runner.NetworkUser, "network mode: "+strings.Join(runner.Networks, ", "))
	fs.StringVar(&spec.SyncMode, "sync-mode", syncwatch.ModeManual, "sync mode: "+strings.Join(syncwatch.Modes, ", "))
	fs.StringVar(&spec.Agent, "agent", "", "run this agent in the sandbox's session: claude, codex, gemini; none drops it (default: the sandbox's last choice)")
	fs.StringVar(&spec.Runner, "runner", os.Getenv("KEYSTONE_AGENT_RUNNER"), "use a prebuilt runner directory instead of building with nix (env KEYSTONE_AGENT_RUNNER)")
	egressFlags := addEgressFlags(fs, &spec.Egress)
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	if fs.Changed("name") && spec.Name == "" {
		return &ExitError{Code: ExitUsage, Err: names.Validate(""), Hint: "leave --name out to name the sandbox after the project directory"}
	}
	spec.Credentials = creds
	if err := egressFlags(); err != nil {
		return err
	}
	spec.Nested = !*noNested
	if fs.NArg() == 1 {
		spec.Project = fs.Arg(0)
	}
	sbe, err := env.Sandboxes()
	if err != nil {
		return err
	}
	sb, err := sbe.Start(ctx, spec)
	if err != nil {
		return err
	}
	if sb.PasswordLogin() {
		fmt.Fprintf(env.Stderr, "keystone: warning: password login is on for %q (no SSH key in ~/.ssh): %s\n", sb.Name, passwordLoginRisk)
	}
	refreshSSHConfig(env, sbe)
	if *noAttach {
		fmt.Fprintf(env.Stderr, "Sandbox %q is running (SSH on 127.0.0.1:%d).\n", sb.Name, sb.SSHPort)
		if sb.Agent != "" {
			fmt.Fprintf(env.Stderr, "%s runs in its session. Run `keystone agent attach %s` to join it.\n", sb.Agent, sb.Name)
		} else {
			fmt.Fprintf(env.Stderr, "Run `keystone agent attach %s` to open a shell.\n", sb.Name)
		}
		return nil
	}
	return attach(ctx, env, sb, false)
}

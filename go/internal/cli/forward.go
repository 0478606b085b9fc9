package cli

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/forward"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/statedir"
)

func newForwardCmd() *verb {
	return &verb{
		name:    "forward",
		summary: "forward host ports on 127.0.0.1 to ports in a sandbox",
		usage: `Usage: keystone agent forward [name] [--] [HOST_PORT:]GUEST_PORT... [--background]
       keystone agent forward [name] --cancel [HOST_PORT...]

Forward 127.0.0.1:HOST_PORT on the host to GUEST_PORT in the sandbox (its
localhost), over the sandbox's pinned SSH connection, until interrupted.
HOST_PORT defaults to GUEST_PORT; 0 takes any free port. Each forward is
printed as it is bound. A sandbox whose name is only digits is named before
` + "`--`" + `: keystone agent forward 2048 -- 3000.

--background hands the forwards to the sandbox's host daemon instead: they
stay until ` + "`stop`" + ` (or --cancel) and are listed by ` + "`status`" + `; they are not
restored by the next ` + "`start`" + `. --cancel ends background forwards by host port,
or all of them.
`,
		run: runForward,
	}
}

func runForward(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	background := fs.Bool("background", false, "keep the forwards in the sandbox's host daemon until stop")
	cancel := fs.Bool("cancel", false, "end background forwards on these host ports (all when none given)")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	named, rest := splitName(fs.Args(), fs.ArgsLenAtDash())
	if err := maxArgs(v, named, 1); err != nil {
		return err
	}
	specs := make([]forward.Spec, 0, len(rest))
	for _, a := range rest {
		s, err := forward.ParseSpec(a)
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		specs = append(specs, s)
	}
	if err := forward.Distinct(specs); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	switch {
	case *cancel && *background:
		return &ExitError{Code: ExitUsage, Err: errors.New("forward: --cancel and --background do not go together")}
	case !*cancel && len(specs) == 0:
		return &ExitError{Code: ExitUsage, Err: errors.New("forward: which ports? give [HOST_PORT:]GUEST_PORT"), Hint: "usage: keystone agent forward [name] [HOST_PORT:]GUEST_PORT..."}
	}
	_, sb, err := resolve(env, named)
	if err != nil {
		return err
	}
	socket := sb.Dir.Path(statedir.ForwardSocket)
	switch {
	case *cancel:
		ports := make([]int, len(specs))
		for i, s := range specs {
			ports[i] = s.HostPort
		}
		gone, err := forward.Ask(ctx, socket, forward.Request{Op: forward.OpCancel, HostPorts: ports})
		if err != nil {
			return daemonError(sb, err)
		}
		for _, s := range gone {
			fmt.Fprintf(env.Stdout, "stopped %s\n", s)
		}
		return nil
	case *background:
		added, err := forward.Ask(ctx, socket, forward.Request{Op: forward.OpAdd, Forwards: specs})
		if err != nil {
			return daemonError(sb, err)
		}
		printForwards(env, added)
		fmt.Fprintf(env.Stderr, "Forwarding in the background until `keystone agent stop %s`; `keystone agent forward %s --cancel` ends it sooner.\n", sb.Name, sb.Name)
		return nil
	}
	return forwardHere(ctx, env, sb, specs)
}

// splitName separates the sandbox name from the forwards: the arguments
// before `--`, else the first argument when it is not a forward.
func splitName(args []string, dash int) (named, rest []string) {
	switch {
	case dash >= 0:
		return args[:dash], args[dash:]
	case len(args) > 0 && !forward.IsSpec(args[0]):
		return args[:1], args[1:]
	}
	return nil, args
}

// forwardHere serves the forwards in this process until ctx ends (Ctrl-C).
func forwardHere(ctx context.Context, env *Env, sb *sandbox.Sandbox, specs []forward.Spec) error {
	conn := &forward.Conn{Dial: func(ctx context.Context) (*ssh.Client, error) { return sb.Dial(ctx) }}
	defer conn.Close()
	// Connect first: a stopped sandbox fails here, before any port is bound.
	if _, err := conn.Get(ctx); err != nil {
		return notReachable(sb, err)
	}
	ls, err := forward.Listen(specs)
	if err != nil {
		return err
	}
	printForwards(env, specOf(ls))
	fmt.Fprintln(env.Stderr, "Forwarding until interrupted (Ctrl-C).")
	logf := func(format string, args ...any) {
		fmt.Fprintf(env.Stderr, "keystone: %s\n", fmt.Sprintf(format, args...))
	}
	errs := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errs <- forward.Serve(ctx, l, conn.Get, logf) }()
	}
	var first error
	for range ls {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func specOf(ls []*forward.Listener) []forward.Spec {
	out := make([]forward.Spec, len(ls))
	for i, l := range ls {
		out[i] = l.Spec
	}
	return out
}

func printForwards(env *Env, specs []forward.Spec) {
	for _, s := range specs {
		fmt.Fprintln(env.Stdout, s)
	}
}

// daemonError explains a failed request to the host daemon.
func daemonError(sb *sandbox.Sandbox, err error) error {
	if errors.Is(err, forward.ErrNoDaemon) {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("sandbox %q keeps no background forwards: %w", sb.Name, err),
			Hint: fmt.Sprintf("is it running? `keystone agent status %s`; a sandbox started by an older keystone needs a restart", sb.Name)}
	}
	return err
}

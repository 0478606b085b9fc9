package cli

import (
	"context"
	"fmt"
	"strings"
)

func newAllowCmd() *verb {
	return &verb{
		name:    "allow",
		summary: "let a sandbox reach more hosts (its egress allowlist)",
		usage: `Usage: keystone agent allow <name> [ENTRY...] [--remove]

Add entries to the sandbox's egress allowlist; a running sandbox's proxy
applies them within a second. Without entries, show the sandbox's policy.
An ENTRY is HOST (ports 443 and 80), HOST:PORT, HOST:*, *.DOMAIN, or an
address or prefix such as 10.1.2.3, 10.0.0.0/8 or [fd00::1]:443: addresses
of the host's own networks (loopback, private, link-local) are reached only
through an entry naming the address. The proxy's refusals (HTTP 403) say
the exact command. Declared sandboxes: keystone.agent.sandboxes.<name>.egress.
`,
		run: runAllow,
	}
}

func runAllow(ctx context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	remove := fs.Bool("remove", false, "remove the entries instead")
	if err := parse(fs, v, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("allow: a sandbox name is required"), Hint: "usage: keystone agent allow <name> [ENTRY...]"}
	}
	sbe, sb, err := resolve(env, fs.Args()[:1])
	if err != nil {
		return err
	}
	entries := fs.Args()[1:]
	if len(entries) == 0 {
		printEgress(env.Stdout, sb.Egress)
		return nil
	}
	s, err := sbe.Allow(sb.Name, entries, *remove)
	if err != nil {
		return err
	}
	verb := "now allows"
	if *remove {
		verb = "no longer allows (by its own entries)"
	}
	fmt.Fprintf(env.Stderr, "Sandbox %q %s %s; a running sandbox applies it at once.\n", sb.Name, verb, strings.Join(entries, ", "))
	printEgress(env.Stdout, s)
	return nil
}

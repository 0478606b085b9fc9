package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/keystone-agent/keystone/internal/proxy"
)

func newProxyRelayCmd() *verb {
	return &verb{
		name:    "proxy-relay",
		hidden:  true,
		summary: "hand one guest connection to the sandbox's proxy (run by qemu)",
		usage: `Usage: keystone agent proxy-relay --sandbox NAME SOCKET

Run by qemu for each connection of the guest to its proxy address, with the
connection on stdin: hands it to the host daemon listening on SOCKET and exits.
`,
		run: runProxyRelay,
	}
}

func runProxyRelay(_ context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	name := fs.String("sandbox", "", "the sandbox, for the message when its daemon is not running")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("proxy-relay: a socket path is required")}
	}
	if err := proxy.Relay(fs.Arg(0), os.Stdin); err != nil {
		// The guest reads why instead of a reset connection (stdin is a
		// socket qemu gave us, readable and writable).
		io.WriteString(os.Stdin, proxy.Unavailable(*name))
		return err
	}
	return nil
}

// Command keystone runs AI coding agents in isolated microVM sandboxes:
// `keystone agent <command>`. See docs/cli.md.
package main

import (
	"os"

	"github.com/keystone-agent/keystone/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}

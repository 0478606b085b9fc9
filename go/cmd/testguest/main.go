// Command testguest builds the Debian test guest runner (docs/testguest.md)
// into -out DIR and prints DIR; without -out it builds (or finds) it in its
// cache, where `keystone agent start` looks when nix is absent, and prints
// that directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/keystone-agent/keystone/internal/progress"
	"github.com/keystone-agent/keystone/internal/testguest"
)

func main() {
	// The standard flag package, not pflag: the documented form is "-out DIR".
	out := flag.String("out", "", "also write a standalone copy of the runner to `DIR`")
	kernel := flag.String("kernel", "", "boot this bzImage `FILE` (default: the newest /boot/vmlinuz-*)")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(64)
	}
	line := progress.Start(os.Stderr, "Building the Debian test guest")
	dir, err := testguest.Build(context.Background(), testguest.Options{Out: *out, Kernel: *kernel, Step: line.Set})
	line.Done()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testguest: error:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}

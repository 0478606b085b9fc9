// Command testguest builds the Debian test guest runner (docs/testguest.md)
// into -out DIR and prints DIR.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/keystone-agent/keystone/internal/testguest"
)

func main() {
	// The standard flag package, not pflag: the documented form is "-out DIR".
	out := flag.String("out", "", "write the runner directory to `DIR` (required)")
	kernel := flag.String("kernel", "", "boot this bzImage `FILE` (default: the newest /boot/vmlinuz-*)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(64)
	}
	dir, err := testguest.Build(context.Background(), testguest.Options{Out: *out, Kernel: *kernel, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testguest: error:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}

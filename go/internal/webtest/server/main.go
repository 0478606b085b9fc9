// Command server serves webtest.Handler on -addr: the test guest runs it
// behind `keystone agent forward` (tests, bench/forward).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/keystone-agent/keystone/internal/webtest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen on `ADDR`")
	flag.Parse()
	if err := http.ListenAndServe(*addr, webtest.Handler()); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

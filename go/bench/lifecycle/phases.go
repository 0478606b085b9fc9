package main

import (
	"bytes"
	"os"
	"time"

	"github.com/keystone-agent/keystone/internal/announce"
)

// phaseMarks are console lines of the Debian test guest, in boot order: the
// kernel's first message, the end of its init script, dropbear listening
// (it logs this right after binding its sockets), the guest's announcement.
var phaseMarks = []struct{ name, mark string }{
	{"kernel: first console line", "["},
	{"init: boot script done", "[keystone-testguest] ready"},
	{"sshd: dropbear listening", "Not backgrounding"},
	{"guest: readiness announced", announce.Line},
}

// listening is the index of dropbear's mark in phaseMarks.
const listening = 2

// watchPhases polls the console log from offset and records when each mark
// first appears, relative to t0; stop ends it. Host-side arrival times: the
// serial console is written as the guest prints.
func watchPhases(path string, offset int64, t0 time.Time, stop <-chan struct{}) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	go func() {
		seen := make([]time.Duration, len(phaseMarks))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if data, err := os.ReadFile(path); err == nil && int64(len(data)) > offset {
				for i, p := range phaseMarks {
					if seen[i] == 0 && bytes.Contains(data[offset:], []byte(p.mark)) {
						seen[i] = time.Since(t0)
					}
				}
			}
			select {
			case <-stop:
				out <- seen
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

package sandbox

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// A port held in TIME_WAIT by a closed connection is not free for qemu,
// which binds without SO_REUSEADDR, although Go's own listeners could bind it.
func TestPortFreeSeesTimeWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if portFree(port) {
		t.Fatalf("port %d is listening but portFree says free", port)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close() // the server side closes first: its port enters TIME_WAIT
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Read(make([]byte, 1))
	c.Close()
	ln.Close()
	if portFree(port) {
		t.Fatalf("port %d in TIME_WAIT; portFree says free", port)
	}
	if l2, err := net.Listen("tcp", ln.Addr().String()); err == nil {
		l2.Close() // Go's SO_REUSEADDR listener can bind it: the reason portFree does not use one
	}
}

// qemu's own words for a forward it could not bind make a start try another
// port even when the port is free again when it looks (a check of another
// start held it for a moment).
func TestForwardRefusedReadsQemu(t *testing.T) {
	refused := &BootError{Msg: "did not become ready", Err: errors.New("exited"),
		Log: "qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:2225-10.0.2.15:22: Could not set up host forwarding rule 'tcp:127.0.0.1:2225-10.0.2.15:22'"}
	if !forwardRefused(fmt.Errorf("start: %w", refused)) {
		t.Error("a refused forward is not recognised")
	}
	if forwardRefused(&BootError{Msg: "did not become ready", Log: "Kernel panic - not syncing"}) || forwardRefused(errors.New("other")) {
		t.Error("another boot failure is taken for a refused forward")
	}
}

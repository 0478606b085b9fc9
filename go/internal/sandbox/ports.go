package sandbox

import (
	"fmt"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/registry"
)

// awaitBound waits until something listens on the port (the hypervisor's
// forward), the runner exits, or d passes.
func awaitBound(port int, exited <-chan struct{}, d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && portFree(port); {
		select {
		case <-exited:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// portFree reports whether the hypervisor could bind 127.0.0.1:port now.
// It binds without SO_REUSEADDR, as qemu's user-net forward does: Go's
// listeners set that option and would call a port free while a closed
// connection of an earlier VM still holds it in TIME_WAIT.
func portFree(port int) bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}) == nil
}

// pickPort keeps want when it is free, else returns the first port from
// FirstPort on that no other sandbox (imperative or declared) holds and
// nothing listens on.
// Called under the registry lock, so two starts cannot pick the same port.
func pickPort(tx *registry.Tx, name string, want int, reserved map[int]bool) (int, error) {
	taken := map[int]bool{}
	for p := range reserved {
		taken[p] = true
	}
	for _, e := range tx.Entries() {
		if e.Name != name {
			taken[e.SSHPort] = true
		}
	}
	if want != 0 && !taken[want] && portFree(want) {
		return want, nil
	}
	for p := FirstPort; p < 65536; p++ {
		if !taken[p] && portFree(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free TCP port on 127.0.0.1 from %d on", FirstPort)
}

package sandbox

import (
	"fmt"
	"net"
	"strconv"

	"github.com/keystone-agent/keystone/internal/registry"
)

// portFree reports whether 127.0.0.1:port can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
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

// Package forward relays TCP connections from the host's loopback into a
// sandbox over its pinned SSH connection (direct-tcpip channels, as
// `ssh -L` does), for `keystone agent forward`: in the foreground until
// interrupted, or kept by the sandbox's host daemon (Service) until `stop`.
//
// Host ports are bound on 127.0.0.1 only, never on another address: a
// forwarded dev server is the owner's, not the network's. The control socket
// of the daemon answers the owner's uid only. Nothing of the guest's runs on
// the host: bytes are relayed, never interpreted.
package forward

import (
	"fmt"
	"strconv"
	"strings"
)

// Spec is one forward: host port (on 127.0.0.1) to guest port. A host port
// of 0 takes any free port; Listen fills in the one it got.
type Spec struct {
	HostPort  int `json:"hostPort"`
	GuestPort int `json:"guestPort"`
}

func (s Spec) String() string {
	return fmt.Sprintf("127.0.0.1:%d -> %d", s.HostPort, s.GuestPort)
}

// ParseSpec reads "[HOST_PORT:]GUEST_PORT": "3000" forwards host port 3000
// to guest port 3000, "8080:3000" host 8080 to guest 3000, "0:3000" any free
// host port to guest 3000.
func ParseSpec(s string) (Spec, error) {
	host, guest, two := strings.Cut(s, ":")
	if !two {
		host, guest = s, s
	}
	h, herr := port(host, true)
	g, gerr := port(guest, false)
	if herr != nil || gerr != nil {
		return Spec{}, fmt.Errorf("%q is not a port forward: use GUEST_PORT or HOST_PORT:GUEST_PORT (ports 1-65535)", s)
	}
	return Spec{HostPort: h, GuestPort: g}, nil
}

// IsSpec tells a port forward from a sandbox name (names may be digits
// only, so a caller that must tell them apart uses `--`).
func IsSpec(s string) bool {
	_, err := ParseSpec(s)
	return err == nil
}

func port(s string, zeroOK bool) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 || n == 0 && !zeroOK {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}

// Distinct refuses a host port given twice (0, any free port, may repeat).
func Distinct(specs []Spec) error {
	seen := map[int]bool{}
	for _, s := range specs {
		if s.HostPort != 0 && seen[s.HostPort] {
			return fmt.Errorf("host port %d is given twice", s.HostPort)
		}
		seen[s.HostPort] = true
	}
	return nil
}

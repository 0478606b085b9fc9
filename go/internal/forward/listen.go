package forward

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// PortInUseError means the host port is taken by another program (or by
// another forward).
type PortInUseError struct{ Port int }

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("host port %d is already in use", e.Port)
}

// Hint says the way out.
func (e *PortInUseError) Hint() string {
	return fmt.Sprintf("choose another host port: HOST_PORT:GUEST_PORT, or 0:GUEST_PORT for any free one (`ss -tlnp 'sport = :%d'` shows who holds it)", e.Port)
}

// Listener is a bound host port and the guest port it forwards to.
type Listener struct {
	Spec // HostPort is the port actually bound
	net.Listener
}

// Listen binds 127.0.0.1:HostPort of every spec, all or none: when one
// fails, the ones already bound are closed again.
func Listen(specs []Spec) ([]*Listener, error) {
	if err := Distinct(specs); err != nil {
		return nil, err
	}
	var out []*Listener
	for _, s := range specs {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.HostPort)))
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			switch {
			case errors.Is(err, syscall.EADDRINUSE):
				return nil, &PortInUseError{Port: s.HostPort}
			case errors.Is(err, syscall.EACCES):
				return nil, fmt.Errorf("host port %d is privileged: choose one above 1023 (HOST_PORT:GUEST_PORT)", s.HostPort)
			}
			return nil, fmt.Errorf("cannot listen on 127.0.0.1:%d: %w", s.HostPort, err)
		}
		s.HostPort = l.Addr().(*net.TCPAddr).Port
		out = append(out, &Listener{Spec: s, Listener: l})
	}
	return out, nil
}

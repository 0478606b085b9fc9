package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keystone-agent/keystone/internal/egress"
)

// Resolver is the part of net.Resolver the proxy uses (tests give fixed answers).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Reasons a request is refused; RefusedError carries one.
const (
	reasonNotAllowed = "not in its egress allowlist"
	reasonNone       = "its egress mode is none"
	reasonAddress    = "an address of the host or a private network"
	reasonBadTarget  = "not a valid host and port"
)

// RefusedError is a destination the policy refuses. Its message is the one
// sentence the guest reads in the 403's body.
type RefusedError struct {
	Target  string // host:port as asked, normalized
	Addr    string // the refused address, when the name resolved to it
	Reason  string
	Command string // what allows it, on the host
}

func (e *RefusedError) Error() string {
	what := e.Target
	if e.Addr != "" {
		what = fmt.Sprintf("%s (address %s, %s)", e.Target, e.Addr, e.Reason)
	} else {
		what = fmt.Sprintf("%s (%s)", e.Target, e.Reason)
	}
	return fmt.Sprintf("keystone: this sandbox may not reach %s; to allow it, %s", what, e.Command)
}

// target is a destination the guest named, normalized.
type target struct {
	host string // lower-case name or address literal (no brackets, no zone)
	port int
}

func (t target) String() string { return egress.HostPort(t.host, t.port) }

// parseTarget normalizes "host:port" (or a bare host with defPort) from the
// guest. Names must be DNS names; addresses lose any zone.
func parseTarget(hostport string, defPort int) (target, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		if defPort == 0 || strings.Contains(hostport, "]") && !strings.HasPrefix(hostport, "[") {
			return target{}, errBadTarget
		}
		host, ps = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), strconv.Itoa(defPort)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return target{}, errBadTarget
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return target{host: a.Unmap().WithZone("").String(), port: port}, nil
	}
	name, err := egress.NormalizeName(host)
	if err != nil {
		return target{}, errBadTarget
	}
	return target{host: name, port: port}, nil
}

var errBadTarget = errors.New("not a valid host and port")

// dialer resolves once, checks every address against the policy and dials
// only an address that passed: a name cannot be re-resolved to another
// address between the check and the connection (DNS rebinding).
type dialer struct {
	resolver  Resolver
	hostAddrs func() map[netip.Addr]bool
	timeout   time.Duration
}

// dial connects to t, which AllowsHost has passed.
func (d *dialer) dial(ctx context.Context, p *egress.Policy, t target, refuse func(t target, addr, reason string) error) (net.Conn, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(t.host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, d.timeout)
		addrs, err = d.resolver.LookupNetIP(rctx, "ip", t.host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cannot resolve %s: %w", t.host, lookupReason(err))
		}
	}
	local := d.hostAddrs()
	var ok []netip.Addr
	var refused netip.Addr
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if p.AllowsAddr(a, t.port, local[a]) {
			ok = append(ok, a)
		} else if !refused.IsValid() {
			refused = a
		}
	}
	if len(ok) == 0 {
		if !refused.IsValid() {
			return nil, fmt.Errorf("cannot resolve %s: no address", t.host)
		}
		return nil, refuse(t, refused.String(), reasonAddress)
	}
	var errs []error
	for _, a := range ok {
		nd := net.Dialer{Timeout: d.timeout}
		c, err := nd.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("cannot connect to %s: %w", t, errors.Join(errs...))
}

// lookupReason keeps the resolver's reason and drops its wording of the name.
func lookupReason(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return errors.New("no such host")
		}
		if de.IsTimeout {
			return errors.New("DNS timeout")
		}
		return errors.New(de.Err)
	}
	return err
}

// hostAddrCache answers "is this an address of the host's own interfaces",
// refreshed every few seconds: a service bound to 0.0.0.0 is reachable on
// the host's public address, so that address is the host's too.
type hostAddrCache struct {
	mu   sync.Mutex
	at   time.Time
	addr map[netip.Addr]bool
}

func (c *hostAddrCache) get() map[netip.Addr]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addr != nil && time.Since(c.at) < 5*time.Second {
		return c.addr
	}
	m := map[netip.Addr]bool{}
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					m[ip.Unmap()] = true
				}
			}
		}
	}
	c.addr, c.at = m, time.Now()
	return m
}

package egress

import (
	"net/netip"
	"strconv"
)

// Policy is compiled Settings: what the proxy asks on every request.
type Policy struct {
	Mode    string
	entries []Entry // the default list (mode allowlist), then the sandbox's own
	own     []Entry
}

// Compile checks s and builds its policy.
func Compile(s Settings) (*Policy, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p := &Policy{Mode: s.Mode}
	if s.Mode == Allowlist {
		for _, a := range DefaultAllow {
			e, err := ParseEntry(a)
			if err != nil {
				panic("egress.DefaultAllow: " + err.Error()) // a test covers the list
			}
			p.entries = append(p.entries, e)
		}
	}
	for _, a := range s.Allow {
		e, _ := ParseEntry(a) // Validate parsed them
		p.entries = append(p.entries, e)
		p.own = append(p.own, e)
	}
	return p, nil
}

// Own returns the sandbox's own entries, as written.
func (p *Policy) Own() []string {
	out := make([]string, len(p.own))
	for i, e := range p.own {
		out[i] = e.String()
	}
	return out
}

// AllowsHost is the first check: may the guest ask for host:port at all?
// host is a normalized name or an address literal. In mode open every name
// passes (its addresses are checked by AllowsAddr); an address literal
// passes in mode open, or when an entry names it.
func (p *Policy) AllowsHost(host string, port int) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		if p.Mode == Open && !Special(a) {
			return true
		}
		return p.entryForAddr(a, port)
	}
	if p.Mode == Open {
		return true
	}
	for _, e := range p.entries {
		if e.matchesName(host) && e.allowsPort(port) {
			return true
		}
	}
	return false
}

// AllowsAddr is the second check, on each address a name resolved to, before
// the proxy dials it: a public address passes, one of the host's networks
// (Special, or hostLocal: an address of the host's own interfaces) only when
// an entry names that address.
func (p *Policy) AllowsAddr(a netip.Addr, port int, hostLocal bool) bool {
	a = a.Unmap().WithZone("")
	if !Special(a) && !hostLocal {
		return true
	}
	return p.entryForAddr(a, port)
}

func (p *Policy) entryForAddr(a netip.Addr, port int) bool {
	for _, e := range p.entries {
		if e.matchesAddr(a) && e.allowsPort(port) {
			return true
		}
	}
	return false
}

// EntryFor is the entry that allows host:port, as the refusal's command
// writes it: the bare host for the web ports.
func EntryFor(host string, port int) string {
	e := Entry{Port: port}
	if port == 443 || port == 80 {
		e.Port = 0
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		e.Prefix = netip.PrefixFrom(a, a.BitLen())
		return e.String()
	}
	e.Name = host
	return e.String()
}

// HostPort joins a host and port for messages ("[::1]:443").
func HostPort(host string, port int) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() && !a.Is4In6() {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// special are the ranges that reach the host, its networks or nothing at
// all, beyond what netip classifies (RFC 6890 and successors).
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (Tailscale, cloud VPCs)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo: embeds an IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still routed by some)
}

// Special says whether a reaches the host itself, a private or link-local
// network, or is not a unicast destination at all. Such addresses are
// dialled only when an entry names them.
func Special(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range special {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

package egress

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Entry is one allowlist entry: a host name (exact, or "*.domain" for every
// name under domain), an address or an address prefix; and the ports it
// allows. Written forms (--allow, the 403's command):
//
//	example.com          ports 443 and 80
//	example.com:8443     that port only
//	example.com:*        every port
//	*.example.com        every name under example.com, not example.com itself
//	10.1.2.3, 10.0.0.0/8, [fd00::1]:443, fd00::/8
type Entry struct {
	Name     string       // lower case, no trailing dot; "" for addresses
	Wildcard bool         // Name is a domain: "*.Name"
	Prefix   netip.Prefix // valid for addresses
	Port     int          // 0: 443 and 80; -1: every port
}

// WebPorts are the ports an entry without a port allows.
var WebPorts = []int{443, 80}

// maxEntry bounds an entry's length: a DNS name is at most 253 bytes.
const maxEntry = 300

// ParseEntry parses one entry as written with --allow.
func ParseEntry(s string) (Entry, error) {
	bad := func(why string) (Entry, error) {
		return Entry{}, fmt.Errorf("invalid --allow entry %q: %s (write HOST, HOST:PORT, *.DOMAIN or an address such as 10.1.2.3 or 10.0.0.0/8)", s, why)
	}
	if s == "" || len(s) > maxEntry {
		return bad("empty or too long")
	}
	host, port, err := splitPort(s)
	if err != nil {
		return bad(err.Error())
	}
	e := Entry{Port: port}
	if p, err := parseAddrOrPrefix(host); err == nil {
		e.Prefix = p
		return e, nil
	}
	if strings.ContainsAny(host, ":/[]") {
		return bad("not a host name or an address")
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		e.Wildcard, host = true, rest
	}
	name, err := NormalizeName(host)
	if err != nil {
		return bad(err.Error())
	}
	// "10.0.0.1." is the address 10.0.0.1 once normalized: an entry means one
	// thing however it was written.
	if p, err := parseAddrOrPrefix(name); err == nil && !e.Wildcard {
		e.Prefix = p
		return e, nil
	}
	e.Name = name
	return e, nil
}

// splitPort splits "host:port", "[v6]:port", "host:*" and a bare host or
// IPv6 address (two colons or more and no brackets: no port).
func splitPort(s string) (string, int, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("missing ]")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return host, 0, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		p, err := parsePort(rest[1:])
		return host, p, err
	}
	if strings.Count(s, ":") > 1 {
		return s, 0, nil
	}
	host, ps, ok := strings.Cut(s, ":")
	if !ok {
		return s, 0, nil
	}
	p, err := parsePort(ps)
	return host, p, err
}

func parsePort(s string) (int, error) {
	if s == "*" {
		return -1, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || strings.HasPrefix(s, "+") || strings.HasPrefix(s, "0") {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535 or *", s)
	}
	return p, nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// NormalizeName lower-cases a DNS host name, drops one trailing dot and
// checks its syntax (letters, digits, hyphens and underscores in labels of
// at most 63 bytes, 253 in all).
func NormalizeName(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("host name is empty or longer than 253 bytes")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("host name has an empty label or one longer than 63 bytes")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host name label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host name has the character %q", c)
			}
		}
	}
	return s, nil
}

// String writes the entry back in the form ParseEntry reads.
func (e Entry) String() string {
	var host string
	switch {
	case e.Name != "" && e.Wildcard:
		host = "*." + e.Name
	case e.Name != "":
		host = e.Name
	case e.Prefix.IsSingleIP():
		host = e.Prefix.Addr().String()
	default:
		host = e.Prefix.String()
	}
	switch {
	case e.Port == 0:
		return host
	case e.Name == "" && e.Prefix.Addr().Is6():
		return "[" + host + "]:" + portString(e.Port)
	default:
		return host + ":" + portString(e.Port)
	}
}

func portString(p int) string {
	if p < 0 {
		return "*"
	}
	return strconv.Itoa(p)
}

func (e Entry) allowsPort(port int) bool {
	switch e.Port {
	case -1:
		return true
	case 0:
		return port == 443 || port == 80
	}
	return e.Port == port
}

// matchesName says whether the entry names host (normalized).
func (e Entry) matchesName(host string) bool {
	if e.Name == "" {
		return false
	}
	if e.Wildcard {
		return strings.HasSuffix(host, "."+e.Name)
	}
	return host == e.Name
}

// matchesAddr says whether the entry is an address entry containing a.
func (e Entry) matchesAddr(a netip.Addr) bool {
	return e.Name == "" && e.Prefix.IsValid() && e.Prefix.Contains(a)
}

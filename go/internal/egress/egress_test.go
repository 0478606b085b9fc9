package egress

import (
	"net/netip"
	"testing"
)

func TestParseEntry(t *testing.T) {
	good := map[string]string{
		"example.com":             "example.com",
		"Example.COM.":            "example.com",
		"example.com:8443":        "example.com:8443",
		"example.com:*":           "example.com:*",
		"*.githubusercontent.com": "*.githubusercontent.com",
		"10.1.2.3":                "10.1.2.3",
		"10.1.2.3:5432":           "10.1.2.3:5432",
		"10.0.0.0/8":              "10.0.0.0/8",
		"10.1.2.3/8":              "10.0.0.0/8",
		"fd00::1":                 "fd00::1",
		"[fd00::1]:443":           "[fd00::1]:443",
		"fd00::/8":                "fd00::/8",
		"::ffff:127.0.0.1":        "127.0.0.1",
		"my_host.internal":        "my_host.internal",
	}
	for in, want := range good {
		e, err := ParseEntry(in)
		if err != nil {
			t.Errorf("ParseEntry(%q): %v", in, err)
			continue
		}
		if e.String() != want {
			t.Errorf("ParseEntry(%q) = %q; want %q", in, e.String(), want)
		}
		if back, err := ParseEntry(e.String()); err != nil || back != e {
			t.Errorf("%q does not round-trip: %v %v", in, back, err)
		}
	}
	for _, in := range []string{"", "exa mple.com", "example.com:0", "example.com:65536", "example.com:08",
		"example.com:+1", "-bad.com", "a..b", "http://example.com", "example.com/path", "[fd00::1", "[fd00::1]x",
		"*.*.com", "*", "ex\x00ample.com", "ex\nample.com", string(make([]byte, 400))} {
		if _, err := ParseEntry(in); err == nil {
			t.Errorf("ParseEntry(%q) accepted", in)
		}
	}
}

func TestDefaultAllowParses(t *testing.T) {
	for _, a := range DefaultAllow {
		if _, err := ParseEntry(a); err != nil {
			t.Error(err)
		}
	}
}

func TestAllowsHost(t *testing.T) {
	allow, _ := Compile(Settings{Mode: Allowlist, Allow: []string{"corp.example:8443", "*.internal.example", "10.1.2.3"}})
	open, _ := Compile(Settings{Mode: Open})
	none, _ := Compile(Settings{Mode: None, Allow: []string{"only.example"}})
	cases := []struct {
		p    *Policy
		host string
		port int
		want bool
	}{
		{allow, "registry.npmjs.org", 443, true},
		{allow, "registry.npmjs.org", 80, true},
		{allow, "registry.npmjs.org", 22, false},
		{allow, "objects.githubusercontent.com", 443, true},
		{allow, "githubusercontent.com", 443, false}, // *.d is not d
		{allow, "evilgithubusercontent.com", 443, false},
		{allow, "corp.example", 8443, true},
		{allow, "corp.example", 443, false},
		{allow, "a.b.internal.example", 443, true},
		{allow, "example.com", 443, false},
		{allow, "10.1.2.3", 443, true},
		{allow, "10.1.2.4", 443, false},
		{allow, "140.82.112.3", 443, false}, // an address needs an entry in allowlist mode
		{open, "anything.example", 443, true},
		{open, "anything.example", 22, true},
		{open, "140.82.112.3", 443, true},
		{open, "127.0.0.1", 443, false},
		{open, "169.254.169.254", 80, false},
		{none, "registry.npmjs.org", 443, false},
		{none, "only.example", 443, true},
	}
	for _, c := range cases {
		if got := c.p.AllowsHost(c.host, c.port); got != c.want {
			t.Errorf("%s: AllowsHost(%s, %d) = %v; want %v", c.p.Mode, c.host, c.port, got, c.want)
		}
	}
}

func TestAllowsAddr(t *testing.T) {
	p, _ := Compile(Settings{Mode: Open, Allow: []string{"10.1.2.3:5432", "192.168.0.0/16"}})
	for _, c := range []struct {
		addr  string
		port  int
		local bool
		want  bool
	}{
		{"93.184.215.14", 443, false, true},
		{"93.184.215.14", 443, true, false}, // the host's own public address
		{"127.0.0.1", 80, false, false},
		{"127.10.0.1", 80, false, false},
		{"::1", 80, false, false},
		{"::ffff:127.0.0.1", 80, false, false},
		{"0.0.0.0", 80, false, false},
		{"::", 80, false, false},
		{"169.254.169.254", 80, false, false},
		{"fe80::1", 80, false, false},
		{"10.1.2.3", 5432, false, true},
		{"10.1.2.3", 443, false, false},
		{"192.168.7.7", 443, false, true},
		{"172.16.0.1", 443, false, false},
		{"100.100.100.100", 443, false, false},
		{"fd12::1", 443, false, false},
		{"64:ff9b::7f00:1", 443, false, false},
		{"2002:7f00:1::", 443, false, false},
		{"224.0.0.1", 443, false, false},
		{"255.255.255.255", 443, false, false},
		{"2606:4700::1111", 443, false, true},
	} {
		if got := p.AllowsAddr(netip.MustParseAddr(c.addr), c.port, c.local); got != c.want {
			t.Errorf("AllowsAddr(%s, %d, local=%v) = %v; want %v", c.addr, c.port, c.local, got, c.want)
		}
	}
}

func TestEntryFor(t *testing.T) {
	for _, c := range []struct {
		host string
		port int
		want string
	}{
		{"example.com", 443, "example.com"},
		{"example.com", 80, "example.com"},
		{"example.com", 22, "example.com:22"},
		{"10.0.0.5", 443, "10.0.0.5"},
		{"fd00::1", 8443, "[fd00::1]:8443"},
	} {
		got := EntryFor(c.host, c.port)
		if got != c.want {
			t.Errorf("EntryFor(%s, %d) = %q; want %q", c.host, c.port, got, c.want)
		}
		e, err := ParseEntry(got)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := Compile(Settings{Mode: None, Allow: []string{got}})
		if !p.AllowsHost(c.host, c.port) {
			t.Errorf("the entry %q does not allow %s:%d", e, c.host, c.port)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := (Settings{Mode: "closed"}).Validate(); err == nil {
		t.Error("an unknown mode was accepted")
	}
	if err := (Settings{}).Validate(); err != nil {
		t.Errorf("the zero settings (an old registry entry): %v", err)
	}
	if err := (Settings{Upstreams: map[string]string{"anthropic": "http://gw.example"}}).Validate(); err == nil {
		t.Error("a plain-http upstream was accepted")
	}
	if err := (Settings{Upstreams: map[string]string{"mistral": "https://gw.example"}}).Validate(); err == nil {
		t.Error("an unknown provider was accepted")
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, s := range append(DefaultAllow, "10.0.0.0/8:443", "[::1]:*", "x:1") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEntry(s)
		if err != nil {
			return
		}
		back, err := ParseEntry(e.String())
		if err != nil || back != e {
			t.Fatalf("%q → %q does not round-trip: %v", s, e.String(), err)
		}
	})
}

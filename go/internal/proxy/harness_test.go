package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
)

// The real keys of these tests: found anywhere but at the stub upstream of
// their provider, they fail the test.
const (
	anthropicKey = "sk-ant-REALKEY-1111"
	oauthToken   = "sk-ant-oat01-REALTOKEN-2222"
	openaiKey    = "sk-proj-REALKEY-3333"
	geminiKey    = "AIza-REALKEY-4444"
)

var realKeys = []string{anthropicKey, oauthToken, openaiKey, geminiKey}

// stub is an HTTP(S) server that records what it received.
type stub struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*recorded
}

type recorded struct {
	Method, Host, Path, RawQuery string
	Header                       http.Header
	Body                         string
}

func newStub(t testing.TB, tls bool, h http.HandlerFunc) *stub {
	s := &stub{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stub answer\n") }
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, &recorded{r.Method, r.Host, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(body)})
		s.mu.Unlock()
		h(w, r)
	}))
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *stub) requests() []*recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*recorded(nil), s.reqs...)
}

func (s *stub) port() int { return s.Listener.Addr().(*net.TCPAddr).Port }

// sawKey reports any real key the stub received, anywhere in a request.
func (s *stub) sawKey() string {
	for _, r := range s.requests() {
		all := fmt.Sprint(r.Method, r.Host, r.Path, r.RawQuery, r.Header, r.Body)
		for _, k := range realKeys {
			if strings.Contains(all, k) {
				return k
			}
		}
	}
	return ""
}

// fakeDNS answers from a table; names not in it do not exist.
type fakeDNS struct {
	mu    sync.Mutex
	table map[string][]netip.Addr
	calls map[string]int
}

func (d *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[host]++
	if a, ok := d.table[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (d *fakeDNS) set(host string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	d.table[host] = as
}

// harness is a proxy on a loopback port (the production listener is the
// relay's socket; the server does not care where connections come from),
// with stub upstreams for the providers.
type harness struct {
	t         testing.TB
	srv       *Server
	addr      string
	dns       *fakeDNS
	anthropic *stub
	openai    *stub
	gemini    *stub
	settings  egress.Settings
	mu        sync.Mutex
	log       bytes.Buffer
	refusals  []string
}

type harnessOpt func(*harness, *Options)

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, dns: &fakeDNS{table: map[string][]netip.Addr{}, calls: map[string]int{}}}
	stream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}
	h.anthropic, h.openai, h.gemini = newStub(t, true, stream), newStub(t, true, stream), newStub(t, true, stream)
	pool := x509.NewCertPool()
	for _, s := range []*stub{h.anthropic, h.openai, h.gemini} {
		pool.AddCert(s.Certificate())
	}
	creds, _, err := credentials.Parse([]byte("ANTHROPIC_API_KEY=" + anthropicKey + "\nCLAUDE_CODE_OAUTH_TOKEN=" + oauthToken +
		"\nOPENAI_API_KEY=" + openaiKey + "\nGEMINI_API_KEY=" + geminiKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.settings = egress.Settings{Mode: egress.Allowlist}
	o := Options{
		Sandbox:     "demo",
		Credentials: creds,
		Upstreams: map[string]string{
			"anthropic": h.anthropic.URL,
			"openai":    h.openai.URL + "/v1base",
			"gemini":    h.gemini.URL,
		},
		RootCAs:  pool,
		Resolver: h.dns,
		Policy: func() *egress.Policy {
			h.mu.Lock()
			defer h.mu.Unlock()
			p, err := egress.Compile(h.settings)
			if err != nil {
				panic(err)
			}
			return p
		},
		Refused: func(target, reason string) {
			h.mu.Lock()
			h.refusals = append(h.refusals, target)
			h.mu.Unlock()
		},
		Logf: func(format string, args ...any) {
			h.mu.Lock()
			fmt.Fprintf(&h.log, format+"\n", args...)
			h.mu.Unlock()
		},
		testOnlyHostAddrs: func() map[netip.Addr]bool { return nil },
	}
	for _, opt := range opts {
		opt(h, &o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.addr = srv, l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		h.noKeyInLog()
	})
	return h
}

func (h *harness) allow(entries ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settings.Allow = append(h.settings.Allow, entries...)
}

func (h *harness) mode(m string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settings.Mode = m
}

func (h *harness) logText() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

func (h *harness) noKeyInLog() {
	h.t.Helper()
	for _, k := range realKeys {
		if strings.Contains(h.logText(), k) {
			h.t.Errorf("the proxy's log holds a key:\n%s", h.logText())
		}
	}
}

// client is an HTTP client that uses the proxy as a guest would
// (HTTP_PROXY/HTTPS_PROXY), trusting the stubs' certificate.
func (h *harness) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(h.anthropic.Certificate())
	proxyURL := mustURL("http://" + h.addr)
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxyURL),
		TLSClientConfig: tlsConfig(pool),
	}, Timeout: 10 * time.Second}
}

// route sends a request to a provider route, as an agent with
// ANTHROPIC_BASE_URL=http://<proxy>/anthropic does.
func (h *harness) route(method, path string, hdr http.Header, body string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+h.addr+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// raw writes bytes on a fresh connection and returns everything the proxy
// answers until it closes or stays quiet for a second.
func (h *harness) raw(req string) string {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	var out bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

// status reads one response's status line from r.
func statusLine(r *bufio.Reader) string {
	line, _ := r.ReadString('\n')
	return strings.TrimSpace(line)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

func itoa(i int) string { return strconv.Itoa(i) }

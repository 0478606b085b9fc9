package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
)

func ph(v string) string { return credentials.Placeholder(v) }

func TestRouteInjectsTheKeyAtItsUpstreamOnly(t *testing.T) {
	h := newHarness(t)
	resp, body := h.route("POST", "/anthropic/v1/messages?beta=true", http.Header{
		"X-Api-Key": {ph("ANTHROPIC_API_KEY")}, "Host": {"evil.example"}, "Content-Type": {"application/json"},
	}, `{"model":"claude"}`)
	if resp.StatusCode != 200 || body != `{"ok":true}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	reqs := h.anthropic.requests()
	if len(reqs) != 1 {
		t.Fatalf("the upstream got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Header.Get("X-Api-Key") != anthropicKey {
		t.Errorf("x-api-key at the upstream = %q; want the real key", r.Header.Get("X-Api-Key"))
	}
	if r.Path != "/v1/messages" || r.RawQuery != "beta=true" || r.Body != `{"model":"claude"}` {
		t.Errorf("upstream got %s ?%s %q", r.Path, r.RawQuery, r.Body)
	}
	if r.Host != h.anthropic.Listener.Addr().String() {
		t.Errorf("upstream Host = %q: the guest's Host header must not pass", r.Host)
	}
	if k := h.openai.sawKey() + h.gemini.sawKey(); k != "" {
		t.Errorf("another upstream saw %q", k)
	}
}

func TestRouteEachProvidersSlots(t *testing.T) {
	h := newHarness(t)
	h.route("POST", "/anthropic/v1/messages", http.Header{"Authorization": {"Bearer " + ph("CLAUDE_CODE_OAUTH_TOKEN")}}, "")
	h.route("POST", "/openai/v1/responses", http.Header{"Authorization": {"bearer " + ph("OPENAI_API_KEY")}}, "")
	h.route("POST", "/gemini/v1beta/models/m:generateContent", http.Header{"X-Goog-Api-Key": {ph("GEMINI_API_KEY")}}, "")
	h.route("GET", "/gemini/v1beta/models?key="+ph("GEMINI_API_KEY")+"&pageSize=5", nil, "")

	if got := h.anthropic.requests()[0].Header.Get("Authorization"); got != "Bearer "+oauthToken {
		t.Errorf("anthropic OAuth: Authorization = %q", got)
	}
	o := h.openai.requests()[0]
	if got := o.Header.Get("Authorization"); got != "Bearer "+openaiKey {
		t.Errorf("openai: Authorization = %q", got)
	}
	if o.Path != "/v1base/v1/responses" {
		t.Errorf("openai: the upstream's path is kept below its base: %q", o.Path)
	}
	g := h.gemini.requests()
	if got := g[0].Header.Get("X-Goog-Api-Key"); got != geminiKey {
		t.Errorf("gemini header: %q", got)
	}
	if g[1].RawQuery != "key="+geminiKey+"&pageSize=5" && g[1].RawQuery != "pageSize=5&key="+geminiKey {
		t.Errorf("gemini query: %q", g[1].RawQuery)
	}
}

// A value that is not the placeholder passes unchanged (a key the user
// pasted into the sandbox is theirs to use); no placeholder, no key.
func TestRouteLeavesOtherValues(t *testing.T) {
	h := newHarness(t)
	h.route("POST", "/anthropic/v1/messages", http.Header{"X-Api-Key": {"sk-users-own"}}, "")
	h.route("POST", "/anthropic/v1/messages", nil, "")
	// The OpenAI placeholder on the Anthropic route is not Anthropic's.
	h.route("POST", "/anthropic/v1/messages", http.Header{"Authorization": {"Bearer " + ph("OPENAI_API_KEY")}}, "")
	if k := h.anthropic.sawKey(); k != "" {
		t.Fatalf("the upstream got %q", k)
	}
	if got := h.anthropic.requests()[0].Header.Get("X-Api-Key"); got != "sk-users-own" {
		t.Errorf("got %q", got)
	}
}

func TestRouteWithoutHostCredential(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Credentials, _, _ = credentials.Parse([]byte("OPENAI_API_KEY=" + openaiKey))
	})
	resp, body := h.route("POST", "/anthropic/v1/messages", http.Header{"X-Api-Key": {ph("ANTHROPIC_API_KEY")}}, "")
	if resp.StatusCode != 401 || !strings.Contains(body, "ANTHROPIC_API_KEY") {
		t.Errorf("got %d %q; want 401 naming the variable", resp.StatusCode, body)
	}
	if n := len(h.anthropic.requests()); n != 0 {
		t.Errorf("the upstream was asked %d times", n)
	}
}

// SSE: each event reaches the guest before the upstream writes the next.
func TestRouteStreamsUnbuffered(t *testing.T) {
	next := make(chan struct{})
	h := newHarness(t)
	h.anthropic.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			io.WriteString(w, "event: delta\ndata: {\"i\":"+string(rune('0'+i))+"}\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return // the guest never saw this event: the test fails below
			}
		}
	})
	resp, err := http.Post("http://"+h.addr+"/anthropic/v1/messages", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			if strings.HasPrefix(line, "data: ") {
				break
			}
		}
		next <- struct{}{}
	}
}

func TestRouteRefusesUnknownRoutes(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/", "/mistral/v1/x", "/anthropicx/v1", "/v1/messages"} {
		resp, body := h.route("GET", p, nil, "")
		if resp.StatusCode != 404 || !strings.Contains(body, "/anthropic/") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
}

func TestForwardHTTPAllowedHostGetsNoKey(t *testing.T) {
	h := newHarness(t)
	site := newStub(t, false, nil)
	h.dns.set("pkgs.example", "127.0.0.1")
	h.allow("pkgs.example:*", "127.0.0.1:*")
	req, _ := http.NewRequest("GET", "http://pkgs.example:"+itoa(site.port())+"/index.json", nil)
	req.Header.Set("X-Api-Key", ph("ANTHROPIC_API_KEY"))
	req.Header.Set("Authorization", "Bearer "+ph("OPENAI_API_KEY"))
	resp, err := h.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := site.requests()
	if len(r) != 1 || r[0].Path != "/index.json" || !strings.HasPrefix(r[0].Host, "pkgs.example:") {
		t.Fatalf("site got %+v", r)
	}
	if k := site.sawKey(); k != "" {
		t.Fatalf("a non-provider host got %q", k)
	}
}

func TestRefusalsAreReadable(t *testing.T) {
	h := newHarness(t)
	h.dns.set("evil.example", "93.184.215.14")
	h.dns.set("intranet.example", "10.0.0.5")
	h.allow("intranet.example")
	cases := []struct {
		name, req, want string
	}{
		{"http", "GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
			"keystone: this sandbox may not reach evil.example:80 (not in its egress allowlist); to allow it, run on the host: keystone agent allow demo evil.example"},
		{"connect", "CONNECT evil.example:8443 HTTP/1.1\r\nHost: evil.example:8443\r\n\r\n",
			"keystone: this sandbox may not reach evil.example:8443 (not in its egress allowlist); to allow it, run on the host: keystone agent allow demo evil.example:8443"},
		{"private address", "CONNECT intranet.example:443 HTTP/1.1\r\nHost: intranet.example:443\r\n\r\n",
			"keystone: this sandbox may not reach intranet.example:443 (address 10.0.0.5, an address of the host or a private network); to allow it, run on the host: keystone agent allow demo 10.0.0.5"},
		{"loopback literal", "GET http://127.0.0.1:6379/ HTTP/1.1\r\nHost: x\r\n\r\n",
			"keystone: this sandbox may not reach 127.0.0.1:6379 (not in its egress allowlist); to allow it, run on the host: keystone agent allow demo 127.0.0.1:6379"},
	}
	for _, c := range cases {
		out := h.raw(c.req)
		if !strings.HasPrefix(out, "HTTP/1.1 403 ") || !strings.Contains(out, "\r\n\r\n"+c.want+"\n") {
			t.Errorf("%s: got\n%s\nwant a 403 with body\n%s", c.name, out, c.want)
		}
	}
	h.mode(egress.None)
	out := h.raw("CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n\r\n")
	if want := "(its egress mode is none); to allow it, run on the host: keystone agent allow demo registry.npmjs.org"; !strings.Contains(out, want) {
		t.Errorf("none: got\n%s", out)
	}
	if len(h.refusals) != 5 {
		t.Errorf("refusals recorded: %v", h.refusals)
	}
}

func TestRefusalForDeclaredSandbox(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) { o.Declared = true })
	out := h.raw("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	if want := `to allow it, add "evil.example" to keystone.agent.sandboxes.demo.egress.allow in the host's NixOS configuration`; !strings.Contains(out, want) {
		t.Errorf("got\n%s", out)
	}
}

func TestAllowAppliesAtOnce(t *testing.T) {
	h := newHarness(t)
	site := newStub(t, false, nil)
	url := "http://127.0.0.1:" + itoa(site.port()) + "/"
	resp, err := h.client().Get(url)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("before: %v %v", resp, err)
	}
	h.allow("127.0.0.1:" + itoa(site.port()))
	resp, err = h.client().Get(url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after allow: %v %v", resp, err)
	}
}

func TestOpenModeStillGuardsTheHost(t *testing.T) {
	h := newHarness(t)
	h.mode(egress.Open)
	site := newStub(t, false, nil)
	h.dns.set("anything.example", "127.0.0.1")
	for _, u := range []string{"http://anything.example:" + itoa(site.port()) + "/", "http://127.0.0.1:" + itoa(site.port()) + "/", "http://[::ffff:127.0.0.1]:" + itoa(site.port()) + "/"} {
		resp, err := h.client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d; want 403", u, resp.StatusCode)
		}
	}
	if len(site.requests()) != 0 {
		t.Fatal("the host's loopback service was reached")
	}
}

// The guest's variables do not depend on which kind of Anthropic key the
// host holds: a placeholder of the other kind gets the host's key where its
// kind goes, with the beta feature an OAuth token needs (or without it).
func TestRouteUsesTheKindTheHostHolds(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Credentials, _, _ = credentials.Parse([]byte("CLAUDE_CODE_OAUTH_TOKEN=" + oauthToken))
	})
	h.route("POST", "/anthropic/v1/messages", http.Header{"X-Api-Key": {ph("ANTHROPIC_API_KEY")}, "Anthropic-Beta": {"fine-grained-tool-streaming-2025-05-14"}}, "{}")
	r := h.anthropic.requests()[0]
	if r.Header.Get("Authorization") != "Bearer "+oauthToken || r.Header.Get("X-Api-Key") != "" ||
		r.Header.Get("Anthropic-Beta") != "fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20" {
		t.Errorf("API key placeholder, OAuth token on the host: the upstream got %v", r.Header)
	}

	h2 := newHarness(t, func(_ *harness, o *Options) {
		o.Credentials, _, _ = credentials.Parse([]byte("ANTHROPIC_API_KEY=" + anthropicKey))
	})
	h2.route("POST", "/anthropic/v1/messages", http.Header{"Authorization": {"Bearer " + ph("CLAUDE_CODE_OAUTH_TOKEN")}, "Anthropic-Beta": {"oauth-2025-04-20,x-1"}}, "{}")
	r = h2.anthropic.requests()[0]
	if r.Header.Get("X-Api-Key") != anthropicKey || r.Header.Get("Authorization") != "" || r.Header.Get("Anthropic-Beta") != "x-1" {
		t.Errorf("OAuth placeholder, API key on the host: the upstream got %v", r.Header)
	}
}

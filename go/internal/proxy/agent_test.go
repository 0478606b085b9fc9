package proxy_test

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/testenv/apistub"
)

// CodexEnv names a Codex binary to run through the proxy on the host.
const CodexEnv = "KEYSTONE_TEST_CODEX"

// Codex reads its base URL from its configuration (openai_base_url), not
// from OPENAI_BASE_URL; it tries the Responses WebSocket first (an upgrade
// through the proxy, placeholder and all), then HTTPS.
func TestCodexThroughTheProxy(t *testing.T) {
	codex := os.Getenv(CodexEnv)
	if codex == "" {
		t.Skipf("set %s to a codex binary to run Codex through the proxy", CodexEnv)
	}
	const key = "sk-proj-host-only-key"
	api := apistub.New("stub says hi")
	defer api.Close()
	addr := serveProxy(t, api, "OPENAI_API_KEY="+key)
	home := seedHome(t, addr) // the guest's ~/.codex/config.toml names the proxy
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, codex, "exec", "--skip-git-repo-check", "say hi")
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin",
		"CODEX_API_KEY=" + credentials.Placeholder("OPENAI_API_KEY")}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stub says hi") {
		t.Fatalf("codex exec: %v\n%s", err, out)
	}
	for _, r := range api.Requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+key {
			t.Errorf("%s %s reached the upstream with Authorization %q", r.Method, r.Path, got)
		}
	}
}

// GeminiEnv names a Gemini CLI (its bundle's gemini.js; node on PATH).
const GeminiEnv = "KEYSTONE_TEST_GEMINI"

// Gemini CLI 0.61 selects its "gateway" authentication when
// GOOGLE_GEMINI_BASE_URL is set, which its headless mode then refuses; with
// the API-key authentication chosen in its settings it takes the base URL
// from the same variable.
func TestGeminiThroughTheProxy(t *testing.T) {
	gemini := os.Getenv(GeminiEnv)
	if gemini == "" {
		t.Skipf("set %s to a gemini binary to run Gemini CLI through the proxy", GeminiEnv)
	}
	const key = "AIza-host-only-key"
	api := apistub.New("stub says hi")
	defer api.Close()
	addr := serveProxy(t, api, "GEMINI_API_KEY="+key)
	home := seedHome(t, addr) // the guest's ~/.gemini/settings.json picks the API key
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gemini, "-p", "say hi")
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GEMINI_CLI_TRUST_WORKSPACE=true",
		"GOOGLE_GEMINI_BASE_URL=http://" + addr + "/gemini",
		"GEMINI_API_KEY=" + credentials.Placeholder("GEMINI_API_KEY")}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stub says hi") {
		t.Fatalf("gemini -p: %v\n%s", err, out)
	}
	for _, r := range api.Requests() {
		if got := r.Header.Get("X-Goog-Api-Key"); got != key {
			t.Errorf("%s %s reached the upstream with x-goog-api-key %q", r.Method, r.Path, got)
		}
	}
}

// seedHome returns a home with the agents' first-run files, as the guest's
// (agents.Manifest.HomeFiles), whose proxy is the one at addr.
func seedHome(t *testing.T, addr string) string {
	home := t.TempDir()
	m, err := agents.Load()
	if err != nil {
		t.Fatal(err)
	}
	files, err := m.HomeFiles(func(name string) (string, bool) {
		v, ok := guestconf.Config{Extra: proxy.GuestEnvironment(egress.Allowlist, nil)}.Lookup(name)
		return strings.Replace(v, proxy.URL, "http://"+addr, 1), ok
	})
	if err != nil {
		t.Fatal(err)
	}
	argv := agents.SeedArgv(files)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seed: %v %s", err, out)
	}
	return home
}

// serveProxy runs a proxy on loopback whose upstreams are api, holding creds.
func serveProxy(t *testing.T, api *apistub.Server, creds string) string {
	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())
	c, _, _ := credentials.Parse([]byte(creds))
	pol, _ := egress.Compile(egress.Settings{Mode: egress.None})
	srv, err := proxy.New(proxy.Options{Sandbox: "t", Policy: func() *egress.Policy { return pol }, Credentials: c,
		Upstreams: map[string]string{"anthropic": api.URL, "openai": api.URL, "gemini": api.URL}, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return l.Addr().String()
}

// ClaudeEnv names a Claude Code binary to run through the proxy on the host
// (the VM test runs the guest's own): the agent's real requests, headers
// and streaming, against a stub Messages API.
const ClaudeEnv = "KEYSTONE_TEST_CLAUDE"

func TestClaudeThroughTheProxy(t *testing.T) {
	claude := os.Getenv(ClaudeEnv)
	if claude == "" {
		t.Skipf("set %s to a claude binary to run Claude Code through the proxy", ClaudeEnv)
	}
	t.Run("API key", func(t *testing.T) {
		claudeThroughTheProxy(t, claude, "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY", "X-Api-Key", "")
	})
	t.Run("OAuth token", func(t *testing.T) {
		claudeThroughTheProxy(t, claude, "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "Authorization", "Bearer ")
	})
	t.Run("API key placeholder, OAuth token on the host", func(t *testing.T) {
		claudeThroughTheProxy(t, claude, "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "Authorization", "Bearer ")
	})
}

// claudeThroughTheProxy runs claude -p with guestVar's placeholder, the host
// holding hostVar, and checks the key arrived in header.
func claudeThroughTheProxy(t *testing.T, claude, guestVar, hostVar, header, prefix string) {
	const key = "sk-ant-host-only-key"
	api := apistub.New("stub says hi")
	defer api.Close()
	addr := serveProxy(t, api, hostVar+"="+key)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, claude, "-p", "say hi", "--output-format", "text")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin",
		"ANTHROPIC_BASE_URL=http://" + addr + "/anthropic",
		guestVar + "=" + credentials.Placeholder(guestVar),
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "IS_SANDBOX=1"}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stub says hi") {
		t.Fatalf("claude -p: %v\n%s", err, out)
	}
	reqs := api.Requests()
	streamed := false
	for _, r := range reqs {
		if got := r.Header.Get(header); got != prefix+key {
			t.Errorf("%s %s reached the upstream with %s %q", r.Method, r.Path, header, got)
		}
		streamed = streamed || r.Stream
	}
	if !streamed {
		t.Errorf("no streamed request among %d", len(reqs))
	}
	t.Logf("claude answered %q in %d requests", strings.TrimSpace(string(out)), len(reqs))
}

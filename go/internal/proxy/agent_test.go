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

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/testenv/apistub"
)

// ClaudeEnv names a Claude Code binary to run through the proxy on the host
// (the VM test runs the guest's own): the agent's real requests, headers
// and streaming, against a stub Messages API.
const ClaudeEnv = "KEYSTONE_TEST_CLAUDE"

func TestClaudeThroughTheProxy(t *testing.T) {
	claude := os.Getenv(ClaudeEnv)
	if claude == "" {
		t.Skipf("set %s to a claude binary to run Claude Code through the proxy", ClaudeEnv)
	}
	t.Run("API key", func(t *testing.T) { claudeThroughTheProxy(t, claude, "ANTHROPIC_API_KEY", "X-Api-Key", "") })
	t.Run("OAuth token", func(t *testing.T) {
		claudeThroughTheProxy(t, claude, "CLAUDE_CODE_OAUTH_TOKEN", "Authorization", "Bearer ")
	})
}

func claudeThroughTheProxy(t *testing.T, claude, variable, header, prefix string) {
	const key = "sk-ant-host-only-key"
	api := apistub.New("stub says hi")
	defer api.Close()
	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())
	creds, _, _ := credentials.Parse([]byte(variable + "=" + key))
	pol, _ := egress.Compile(egress.Settings{Mode: egress.None})
	srv, err := proxy.New(proxy.Options{Sandbox: "t", Policy: func() *egress.Policy { return pol }, Credentials: creds,
		Upstreams: map[string]string{"anthropic": api.URL}, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, claude, "-p", "say hi", "--output-format", "text")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin",
		"ANTHROPIC_BASE_URL=http://" + l.Addr().String() + "/anthropic",
		variable + "=" + credentials.Placeholder(variable),
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

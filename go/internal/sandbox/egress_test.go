package sandbox

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

func testEnv(t *testing.T) *Env {
	dir := t.TempDir()
	root := statedir.Dir(filepath.Join(dir, "state"))
	return &Env{Root: root, Registry: registry.New(root.Registry(), root.Lock()), Declared: filepath.Join(dir, "declared.json")}
}

func TestDeclaredEgress(t *testing.T) {
	e := testEnv(t)
	os.WriteFile(e.Declared, []byte(`{"version":1,"sandboxes":{"app":{"dir":"/var/lib/keystone-agent/app","unit":"microvm@app.service",
		"egress":{"mode":"none","allow":["pypi.corp.example","10.1.2.3"],"upstreams":{"anthropic":"https://gw.example/a"},"upstreamCA":"/etc/ssl/corp.pem"}}}}`), 0o644)
	s, err := e.EgressSettings("app")
	if err != nil {
		t.Fatal(err)
	}
	want := egress.Settings{Mode: "none", Allow: []string{"pypi.corp.example", "10.1.2.3"},
		Upstreams: map[string]string{"anthropic": "https://gw.example/a"}, UpstreamCA: "/etc/ssl/corp.pem"}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v; want %+v", s, want)
	}
	var ue *UsageError
	if _, err := e.Allow("app", []string{"example.com"}, false); !errors.As(err, &ue) || !strings.Contains(err.Error(), "keystone.agent.sandboxes.app.egress.allow") {
		t.Fatalf("allow on a declared sandbox: %v", err)
	}
}

func TestAllowUpdatesTheRegistry(t *testing.T) {
	e := testEnv(t)
	e.Registry.Update(func(tx *registry.Tx) error { tx.Put(registry.Entry{Name: "app"}); return nil })
	if _, err := e.Allow("app", []string{"Example.com", "10.1.2.3:5432", "example.com"}, false); err != nil {
		t.Fatal(err)
	}
	s, _ := e.EgressSettings("app")
	if s.Mode != egress.Allowlist || !reflect.DeepEqual(s.Allow, []string{"example.com", "10.1.2.3:5432"}) {
		t.Fatalf("after allow: %+v", s)
	}
	if _, err := e.Allow("app", []string{"example.com."}, true); err != nil {
		t.Fatal(err)
	}
	if s, _ = e.EgressSettings("app"); !reflect.DeepEqual(s.Allow, []string{"10.1.2.3:5432"}) {
		t.Fatalf("after remove: %+v", s)
	}
	var ue *UsageError
	if _, err := e.Allow("app", []string{"http://x"}, false); !errors.As(err, &ue) {
		t.Fatalf("a bad entry: %v", err)
	}
}

func TestCredentialsFileAndEnvironment(t *testing.T) {
	e := testEnv(t)
	os.MkdirAll(string(e.Root), 0o700)
	env, _, _ := credentials.Parse([]byte("OPENAI_API_KEY=from-env\n"))
	os.WriteFile(e.Root.Credentials(), []byte("OPENAI_API_KEY=from-file\nGEMINI_API_KEY=g\n"), 0o600)
	c, err := e.credentials(env)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("OPENAI_API_KEY"); v != "from-env" {
		t.Errorf("the environment does not win: %q", v)
	}
	if v, _ := c.Get("GEMINI_API_KEY"); v != "g" {
		t.Errorf("the file's other key: %q", v)
	}
	os.Chmod(e.Root.Credentials(), 0o644)
	var me *credentials.ModeError
	if _, err := e.credentials(env); !errors.As(err, &me) {
		t.Fatalf("a world-readable file: %v", err)
	}
}

// The VM's runner gets the proxy's part of the contract and no credential,
// whatever this process's environment holds.
func TestRunnerEnvHasNoCredentials(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-leak")
	t.Setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat-leak")
	sb := &Sandbox{Entry: registry.Entry{Name: "app", Network: "user", Egress: egress.Settings{Mode: "none"}}, Dir: statedir.Dir(t.TempDir()).Sandbox("app")}
	env := strings.Join(sb.runnerEnv("/usr/bin/keystone"), "\n")
	if strings.Contains(env, "leak") {
		t.Fatal("a credential reaches the runner")
	}
	for _, want := range []string{"\nKEYSTONE_EGRESS=none\n", "\nKEYSTONE_PROXY_ADDRESS=10.0.2.100:3128\n",
		"\nKEYSTONE_PROXY_COMMAND='/usr/bin/keystone' agent proxy-relay --sandbox 'app' '" + sb.Dir.Path(statedir.ProxySocket) + "'\n"} {
		if !strings.Contains("\n"+env+"\n", want) {
			t.Errorf("runner environment lacks %q", strings.TrimSpace(want))
		}
	}
}

// The session environment a start writes has the proxy's variables for the
// sandbox's egress mode and placeholders for the credentials it holds: the
// names reach it, never the values.
func TestGuestConfHasTheProxyVariables(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-leak")
	creds, _, _ := credentials.Parse([]byte("CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat-leak\n"))
	for _, mode := range egress.Modes {
		sb := &Sandbox{Entry: registry.Entry{Name: "app", ProjectPath: t.TempDir(), Egress: egress.Settings{Mode: mode}},
			Dir: statedir.Dir(t.TempDir()).Sandbox("app")}
		if err := WriteGuestConf(context.Background(), sb, creds.Names(), io.Discard); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(sb.Dir.Guest(), statedir.GuestEnvironment))
		if err != nil {
			t.Fatal(err)
		}
		env := string(b)
		if strings.Contains(env, "leak") {
			t.Fatalf("%s: a credential is in the guest's environment:\n%s", mode, env)
		}
		for _, want := range []string{"export ANTHROPIC_BASE_URL='http://10.0.2.100:3128/anthropic'\n",
			"export CLAUDE_CODE_OAUTH_TOKEN='keystone-placeholder-claude-code-oauth-token'\n",
			"export OPENAI_API_KEY='keystone-placeholder-openai-api-key'\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: the environment lacks %q", mode, want)
			}
		}
		if proxied := strings.Contains(env, "export HTTPS_PROXY="); proxied != (mode != egress.Open) {
			t.Errorf("%s: HTTPS_PROXY set: %v", mode, proxied)
		}
	}
}

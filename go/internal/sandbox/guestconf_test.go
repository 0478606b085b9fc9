package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Every session in the guest reaches the network and the providers through
// the sandbox's proxy: the environment file a start writes carries the
// proxy's variables and placeholders, never a key (found by the QA
// campaign: the file had none, so an agent called its provider directly and
// the guest's restricted network refused it).
func TestGuestConfCarriesProxyEnvironment(t *testing.T) {
	project := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", project).CombinedOutput(); err != nil {
		t.Skipf("git: %v %s", err, out)
	}
	sb := &Sandbox{Entry: registry.Entry{Name: "app", ProjectPath: project}, Dir: statedir.Sandbox(t.TempDir())}
	if err := WriteGuestConf(context.Background(), sb, []string{"CLAUDE_CODE_OAUTH_TOKEN"}, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(sb.Dir.Guest(), statedir.GuestEnvironment))
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, want := range []string{
		"export HTTPS_PROXY='" + proxy.URL + "'",
		"export ANTHROPIC_BASE_URL='" + proxy.URL + "/anthropic'",
		"export CLAUDE_CODE_OAUTH_TOKEN='keystone-placeholder-",
		"export KEYSTONE_SANDBOX='app'",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("environment file lacks %q:\n%s", want, env)
		}
	}
}

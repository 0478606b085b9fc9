package sandbox_test

// End to end on the Debian test guest: the pinned agents, run in the guest
// as a user runs them (`keystone agent exec`), get their answers from stub
// APIs on the host's loopback through the sandbox's proxy, which adds the
// keys that only the environment of `start` held; the keys are nowhere in
// the guest or in the state directory.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/testenv"
	"github.com/keystone-agent/keystone/internal/testenv/apistub"
)

// agentExec runs argv in the guest as `keystone agent exec` does (the
// session environment sourced, in /workspace), within timeout, and returns
// its output and status.
func agentExec(t *testing.T, sb *sandbox.Sandbox, timeout time.Duration, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := sb.Connect(ctx)
	if err != nil {
		t.Fatalf("connect %s: %v", sb.Name, err)
	}
	defer c.Close()
	var out, errOut bytes.Buffer
	code, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: argv, Dir: sandbox.WorkDir, Source: guestconf.EnvironmentPath,
		Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("exec %v in %s: %v (stderr: %s)", argv, sb.Name, err, errOut.String())
	}
	if code != 0 {
		t.Logf("%v exited %d; stderr: %s", argv, code, errOut.String())
	}
	return out.String(), code
}

func TestAgentsThroughTheProxy(t *testing.T) {
	env := testenv.New(t)
	guest := testenv.Guest(t)

	const answer = "the stub on the host says hi"
	api := apistub.New(answer)
	t.Cleanup(api.Close)
	ca := writeCA(t, env, api.Certificate())

	// The keys are in the environment of the process that starts the
	// sandbox, and nowhere else: start takes them from there (as `keystone
	// agent start` does), so nothing it runs inherits them.
	random := make([]byte, 12)
	rand.Read(random)
	suffix := hex.EncodeToString(random)
	keys := map[string]string{
		"ANTHROPIC_API_KEY": "sk-ant-api03-e2e-" + suffix,
		"OPENAI_API_KEY":    "sk-proj-e2e-" + suffix,
		"GEMINI_API_KEY":    "AIza-e2e-" + suffix,
	}
	for name, k := range keys {
		t.Setenv(name, k)
	}
	creds := credentials.TakeEnv()
	upstreams := map[string]string{}
	for _, p := range credentials.Providers {
		upstreams[p.Name] = api.URL
	}
	spec := sandbox.Spec{Project: env.Repo(t, "agents"), MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual", Runner: guest, Credentials: creds, Agent: "claude",
		Egress: egress.Changes{Upstreams: upstreams, SetUpstreams: true, UpstreamCA: ca, SetUpstreamCA: true}}
	sb := startWithProxy(t, env, spec)

	// run runs an agent's one-shot command and checks that the stub
	// answered it, and that every request the stub got meanwhile carried
	// the host's key in the provider's header.
	run := func(t *testing.T, timeout time.Duration, header, want string, argv ...string) []apistub.Request {
		before := len(api.Requests())
		out, code := agentExec(t, sb, timeout, argv...)
		if code != 0 || !strings.Contains(out, answer) {
			t.Fatalf("%s: exit %d, output %q; want the stub's answer", argv[0], code, out)
		}
		reqs := api.Requests()[before:]
		if len(reqs) == 0 {
			t.Fatalf("%s answered without a request to the stub", argv[0])
		}
		var paths []string
		for _, r := range reqs {
			if got := r.Header.Get(header); got != want {
				t.Errorf("%s %s reached the stub with %s %q; want the host's key", r.Method, r.Path, header, got)
			}
			paths = append(paths, r.Method+" "+r.Path)
		}
		t.Logf("%s: %q in %d requests: %s", argv[0], strings.TrimSpace(out), len(reqs), strings.Join(paths, ", "))
		return reqs
	}

	t.Run("the session and logins have the proxy's variables", func(t *testing.T) {
		pane := strings.TrimSpace(execOut(t, sb, "tmux", "list-panes", "-t", "keystone-agent", "-F", "#{pane_pid}"))
		environ := execOut(t, sb, "sh", "-c", `tr '\0' '\n' </proc/"$1"/environ`, "sh", pane)
		for _, want := range []string{"ANTHROPIC_BASE_URL=http://10.0.2.100:3128/anthropic", "HTTPS_PROXY=http://10.0.2.100:3128",
			"ANTHROPIC_API_KEY=" + credentials.Placeholder("ANTHROPIC_API_KEY")} {
			if !strings.Contains("\n"+environ+"\n", "\n"+want+"\n") {
				t.Errorf("claude's session lacks %s", want)
			}
		}
		// a login shell, no `exec` sourcing: /etc/profile reads the file
		if out := execOut(t, sb, "sh", "-l", "-c", `echo "$OPENAI_BASE_URL $GEMINI_API_KEY"`); strings.TrimSpace(out) != "http://10.0.2.100:3128/openai/v1 "+credentials.Placeholder("GEMINI_API_KEY") {
			t.Errorf("a login shell has %q", out)
		}
	})

	// The session's claude shows its one question, the bypass-permissions
	// acknowledgement, which is the user's to give; it never asks whether to
	// use the placeholder key (with "No" preselected it would log out).
	t.Run("claude's session asks only for the bypass acknowledgement", func(t *testing.T) {
		testenv.Await(t, "claude's first screen", 5*time.Minute, func() string {
			screen, _ := agentExec(t, sb, time.Minute, "tmux", "capture-pane", "-p", "-t", "keystone-agent")
			switch {
			case strings.Contains(screen, "Detected a custom API key"):
				t.Fatalf("claude asks about the placeholder key:\n%s", screen)
			case !strings.Contains(screen, "Bypass Permissions mode"):
				return "the screen shows:\n" + screen
			}
			return ""
		})
	})

	t.Run("claude -p", func(t *testing.T) {
		reqs := run(t, 5*time.Minute, "X-Api-Key", keys["ANTHROPIC_API_KEY"], "claude", "-p", "hello")
		streamed := false
		for _, r := range reqs {
			streamed = streamed || r.Stream && strings.HasSuffix(r.Path, "/v1/messages")
		}
		if !streamed {
			t.Errorf("no streamed Messages request among %d", len(reqs))
		}
	})

	t.Run("codex exec", func(t *testing.T) {
		run(t, 5*time.Minute, "Authorization", "Bearer "+keys["OPENAI_API_KEY"], "codex", "exec", "hello")
	})

	t.Run("gemini -p", func(t *testing.T) {
		// Gemini CLI's first start takes long under TCG: a generous bound.
		run(t, 10*time.Minute, "X-Goog-Api-Key", keys["GEMINI_API_KEY"], "gemini", "-p", "hello")
	})

	// Whatever the agents wrote (logins, sessions, caches) holds placeholders only.
	secrets := []string{keys["ANTHROPIC_API_KEY"], keys["OPENAI_API_KEY"], keys["GEMINI_API_KEY"]}
	t.Run("the keys are nowhere in the guest", func(t *testing.T) { assertNoKeyInGuest(t, sb, secrets...) })
	t.Run("the keys are nowhere in the state directory or the processes' environment", func(t *testing.T) {
		assertNoKeyOnHost(t, env, sb, secrets...)
	})
}

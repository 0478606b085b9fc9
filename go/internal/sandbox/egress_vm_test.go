package sandbox_test

// End to end on the Debian test guest: the guest's only way out is its host
// proxy, which adds the key on the provider route only, enforces the egress
// modes, and leaves no key in the guest or in the state directory.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// recorder is a stub server that keeps every request's headers.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newRecorder(t *testing.T, tls bool, answer string) *recorder {
	r := &recorder{}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		h := req.Header.Clone()
		h.Set("X-Seen-Path", req.URL.Path)
		r.seen = append(r.seen, h)
		r.mu.Unlock()
		io.WriteString(w, answer)
	}))
	if tls {
		r.StartTLS()
	} else {
		r.Start()
	}
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.seen...)
}

func (r *recorder) port() int { return r.Listener.Addr().(*net.TCPAddr).Port }

// guestRun runs a shell script in the guest with the proxy's session
// variables, and returns its output and status.
func guestRun(t *testing.T, sb *sandbox.Sandbox, vars []guestconf.Var, script string) (string, int) {
	t.Helper()
	argv := []string{"env"}
	for _, v := range vars {
		argv = append(argv, v.Name+"="+v.Value)
	}
	argv = append(argv, "sh", "-c", script)
	c, err := sb.Dial(context.Background())
	if err != nil {
		t.Fatalf("dial %s: %v", sb.Name, err)
	}
	defer c.Close()
	var out, errOut bytes.Buffer // two buffers: the streams are copied concurrently
	code, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: argv, Dir: "/workspace", Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("exec in %s: %v", sb.Name, err)
	}
	if code != 0 {
		t.Logf("exit %d, stderr: %s", code, errOut.String())
	}
	return out.String(), code
}

// rawProxy sends a raw request to the proxy from the guest and returns all
// it answers until it closes (bash's /dev/tcp: busybox nc drops the answer
// when its stdin ends first).
func rawProxy(t *testing.T, sb *sandbox.Sandbox, req string) string {
	t.Helper()
	out, _ := guestRun(t, sb, nil, fmt.Sprintf(`exec bash -c 'exec 3<>/dev/tcp/%s/%d; printf "%%b" "$0" >&3; timeout 20 cat <&3' '%s'`,
		proxy.GuestIP, proxy.GuestPort, strings.ReplaceAll(req, "\r\n", `\r\n`)))
	return out
}

func TestEgressEndToEnd(t *testing.T) {
	env := testenv.New(t)
	guest := testenv.Guest(t)

	secret := make([]byte, 12)
	rand.Read(secret)
	key := "sk-ant-e2e-" + hex.EncodeToString(secret)
	// A credential in the environment of the process that starts the
	// sandbox, not handed to it: the VM and the daemon must not inherit it.
	strayKey := "sk-proj-stray-" + hex.EncodeToString(secret)
	t.Setenv("OPENAI_API_KEY", strayKey)

	api := newRecorder(t, true, `{"type":"message","content":[{"type":"text","text":"stub says hi"}]}`)
	site := newRecorder(t, false, "site answer\n")
	ca := writeCA(t, env, api.Certificate())
	creds, _, _ := credentials.Parse([]byte("ANTHROPIC_API_KEY=" + key + "\n"))
	siteAddr := "127.0.0.1:" + strconv.Itoa(site.port())

	spec := sandbox.Spec{Project: env.Repo(t, "egress"), MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual", Runner: guest, Credentials: creds,
		Egress: egress.Changes{Allow: []string{siteAddr}, SetAllow: true,
			Upstreams: map[string]string{"anthropic": api.URL}, SetUpstreams: true,
			UpstreamCA: ca, SetUpstreamCA: true}}
	sb := startWithProxy(t, env, spec)
	vars := proxy.GuestEnvironment(egress.Allowlist, creds.Names())
	varOf := func(name string) string {
		for _, v := range vars {
			if v.Name == name {
				return v.Value
			}
		}
		t.Fatalf("no guest variable %s", name)
		return ""
	}

	t.Run("the provider route gets the key on the host", func(t *testing.T) {
		out, code := guestRun(t, sb, vars, `wget -O - --header "x-api-key: $ANTHROPIC_API_KEY" --header "content-type: application/json" --post-data '{"model":"m"}' "$ANTHROPIC_BASE_URL/v1/messages"`)
		if code != 0 || !strings.Contains(out, "stub says hi") {
			t.Fatalf("guest got %d %q", code, out)
		}
		h := api.headers()
		if len(h) != 1 || h[0].Get("X-Api-Key") != key || h[0].Get("X-Seen-Path") != "/v1/messages" {
			t.Fatalf("the stub upstream got %v", h)
		}
		if varOf("ANTHROPIC_API_KEY") == key {
			t.Fatal("the guest variable is the key")
		}
	})

	t.Run("an allowed host gets no key", func(t *testing.T) {
		out, code := guestRun(t, sb, vars, fmt.Sprintf(`wget -q -O - --header "x-api-key: $ANTHROPIC_API_KEY" http://%s/pkg`, siteAddr))
		if code != 0 || out != "site answer\n" {
			t.Fatalf("guest got %d %q", code, out)
		}
		h := site.headers()
		if len(h) != 1 || h[0].Get("X-Api-Key") != varOf("ANTHROPIC_API_KEY") {
			t.Fatalf("the site got %v", h)
		}
		out = rawProxy(t, sb, fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", siteAddr, siteAddr))
		if !strings.HasPrefix(out, "HTTP/1.1 200 Connection established") || !strings.Contains(out, "site answer") {
			t.Fatalf("CONNECT: %q", out)
		}
	})

	t.Run("a host outside the allowlist gets a readable 403", func(t *testing.T) {
		out := rawProxy(t, sb, "GET http://blocked.example/x HTTP/1.1\r\nHost: blocked.example\r\nConnection: close\r\n\r\n")
		want := "keystone: this sandbox may not reach blocked.example:80 (not in its egress allowlist); to allow it, run on the host: keystone agent allow " + sb.Name + " blocked.example"
		if !strings.HasPrefix(out, "HTTP/1.1 403 Forbidden") || !strings.Contains(out, want) {
			t.Fatalf("got %q", out)
		}
		testenv.Await(t, "status lists the refused host", 5*time.Second, func() string {
			st, _ := proxy.ReadStatus(sb.Dir.State())
			if len(st.Refused) == 0 || st.Refused[0].Target != "blocked.example:80" {
				return fmt.Sprintf("got %+v; want blocked.example:80", st.Refused)
			}
			return ""
		})
	})

	t.Run("direct connections fail", func(t *testing.T) {
		before := len(site.headers())
		for _, target := range []string{"10.0.2.2 " + strconv.Itoa(site.port()), "10.0.2.2 " + strconv.Itoa(sb.SSHPort), proxy.GuestIP + " 80", "10.0.2.3 53"} {
			out, code := guestRun(t, sb, nil, "nc -w 5 "+target+" </dev/null")
			if code == 0 {
				t.Errorf("nc %s: connected (%q)", target, out)
			}
		}
		if out, code := guestRun(t, sb, nil, "nslookup localhost 10.0.2.3"); code == 0 {
			t.Errorf("DNS answered: %q", out)
		}
		if n := len(site.headers()); n != before {
			t.Errorf("the site got %d direct requests", n-before)
		}
	})

	t.Run("allow applies to the running sandbox", func(t *testing.T) {
		req := fmt.Sprintf("GET http://localhost:%d/allowed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", site.port())
		if out := rawProxy(t, sb, req); !strings.HasPrefix(out, "HTTP/1.1 403") {
			t.Fatalf("before allow: %q", out)
		}
		if _, err := env.Allow(sb.Name, []string{"localhost:" + strconv.Itoa(site.port())}, false); err != nil {
			t.Fatal(err)
		}
		testenv.Await(t, "the proxy applies the new entry", 10*time.Second, func() string {
			if out := rawProxy(t, sb, req); !strings.Contains(out, "site answer") {
				return fmt.Sprintf("got %q", out)
			}
			return ""
		})
	})

	t.Run("the key is nowhere in the guest", func(t *testing.T) { assertNoKeyInGuest(t, sb, key, strayKey) })
	// Every file the host keeps for the sandbox, and the environment of its
	// VM and daemon processes.
	t.Run("the key is nowhere in the state directory or the processes' environment", func(t *testing.T) {
		assertNoKeyOnHost(t, env, sb, key, strayKey)
	})

	stopAndStart := func(t *testing.T, mode string) *sandbox.Sandbox {
		t.Helper()
		if _, err := env.Stop(sb); err != nil {
			t.Fatal(err)
		}
		spec.Egress = egress.Changes{Mode: mode, Allow: []string{siteAddr}, SetAllow: mode == egress.None}
		if mode == egress.None {
			spec.Egress.Allow = nil
		}
		s, err := env.Env.Start(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("egress open lets it through", func(t *testing.T) {
		sb = stopAndStart(t, egress.Open)
		ent, _ := env.Registry.Get(sb.Name)
		if ent.Egress.Mode != egress.Open || len(ent.Egress.Upstreams) != 1 {
			t.Fatalf("registry: %+v; want open, the upstream remembered", ent.Egress)
		}
		out := rawProxy(t, sb, fmt.Sprintf("GET http://localhost:%d/open HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", site.port()))
		if !strings.Contains(out, "site answer") {
			t.Errorf("through the proxy: %q", out)
		}
		out, code := guestRun(t, sb, nil, fmt.Sprintf(`printf 'GET /direct HTTP/1.0\r\n\r\n' | nc -w 5 10.0.2.2 %d`, site.port()))
		if code != 0 || !strings.Contains(out, "site answer") {
			t.Errorf("direct: %d %q", code, out)
		}
	})

	t.Run("egress none refuses everything", func(t *testing.T) {
		sb = stopAndStart(t, egress.None)
		for _, req := range []string{
			fmt.Sprintf("GET http://%s/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", siteAddr),
			fmt.Sprintf("GET http://localhost:%d/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", site.port()),
			"CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n",
		} {
			if out := rawProxy(t, sb, req); !strings.HasPrefix(out, "HTTP/1.1 403") || !strings.Contains(out, "its egress mode is none") {
				t.Errorf("%q: got %q", req, out)
			}
		}
		if out, code := guestRun(t, sb, nil, fmt.Sprintf("nc -w 5 10.0.2.2 %d </dev/null", site.port())); code == 0 {
			t.Errorf("a direct connection worked: %q", out)
		}
	})

	var ent registry.Entry
	ent, _ = env.Registry.Get(sb.Name)
	if ent.Egress.Mode != egress.None {
		t.Errorf("registry: %+v", ent.Egress)
	}
}

// assertNoKeyInGuest checks that no key is in any process environment of the
// guest or any file of its home, workspace, /etc or /run (where the session
// environment is).
func assertNoKeyInGuest(t *testing.T, sb *sandbox.Sandbox, keys ...string) {
	t.Helper()
	for _, k := range keys {
		// The key is in grep's argv for the search, never in an environment or a file.
		out, _ := guestRun(t, sb, nil, fmt.Sprintf(`grep -r -l -F '%s' /proc/[0-9]*/environ /home /workspace /etc /run 2>/dev/null; true`, k))
		if strings.TrimSpace(out) != "" {
			t.Errorf("found a key in the guest: %s", out)
		}
	}
}

// assertNoKeyOnHost checks every file of the state directory (the registry,
// the sandbox's state, its logs, the guest share) and the environment of the
// sandbox's VM and host daemon processes: keys reach the daemon over a pipe.
func assertNoKeyOnHost(t *testing.T, env *testenv.Env, sb *sandbox.Sandbox, keys ...string) {
	t.Helper()
	read := map[string]bool{}
	filepath.WalkDir(string(env.Root), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		read[p] = true
		for _, k := range keys {
			if bytes.Contains(b, []byte(k)) {
				t.Errorf("%s holds a key", p)
			}
		}
		return nil
	})
	// the search is not vacuous: it read the registry and the logs
	for _, p := range []string{env.Root.Registry(), sb.Dir.Path(statedir.DaemonLog), sb.Dir.Path(statedir.ConsoleLog)} {
		if !read[p] {
			t.Errorf("the search did not read %s", p)
		}
	}
	vmPID, _ := runner.ReadPID(sb.Dir.State())
	daemonPID, _ := runner.ReadPIDFile(sb.Dir.Path(statedir.DaemonPID))
	for _, pid := range []int{vmPID, daemonPID} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || pid == 0 {
			t.Fatalf("environ of %d: %v", pid, err)
		}
		for _, k := range keys {
			if bytes.Contains(b, []byte(k)) {
				t.Errorf("process %d has a key in its environment", pid)
			}
		}
	}
}

// writeCA writes a stub's certificate where --upstream-ca can name it.
func writeCA(t *testing.T, env *testenv.Env, cert *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(env.Work, "stub-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWithProxy starts a sandbox and shows its host daemon's log (the
// proxy's) if the test fails.
func startWithProxy(t *testing.T, env *testenv.Env, spec sandbox.Spec) *sandbox.Sandbox {
	t.Helper()
	sb, err := env.Env.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(sb.Dir.Path(statedir.DaemonLog))
			t.Logf("hostd.log:\n%s", b)
		}
	})
	return sb
}

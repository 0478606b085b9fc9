package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/proxy"
	"github.com/keystone-agent/keystone/internal/sandbox"
)

func newProxyRelayCmd() *verb {
	return &verb{
		name:    "proxy-relay",
		hidden:  true,
		summary: "hand one guest connection to the sandbox's proxy (run by qemu)",
		usage: `Usage: keystone agent proxy-relay --sandbox NAME SOCKET

Run by qemu for each connection of the guest to its proxy address, with the
connection on stdin: hands it to the host daemon listening on SOCKET and exits.
`,
		run: runProxyRelay,
	}
}

func runProxyRelay(_ context.Context, env *Env, v *verb, args []string) error {
	fs := newFlags(v)
	name := fs.String("sandbox", "", "the sandbox, for the message when its daemon is not running")
	if err := parseArgs(fs, v, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("proxy-relay: a socket path is required")}
	}
	if err := proxy.Relay(fs.Arg(0), os.Stdin); err != nil {
		// The guest reads why instead of a reset connection (stdin is a
		// socket qemu gave us, readable and writable).
		io.WriteString(os.Stdin, proxy.Unavailable(*name))
		return err
	}
	return nil
}

// daemonCredentials reads the credentials `start` piped to the daemon and
// the --credentials file, and removes every credential variable from the
// daemon's own environment, so nothing it starts inherits one.
func daemonCredentials(file string, logf func(string, ...any)) (credentials.Set, error) {
	var c credentials.Set
	if file != "" {
		fc, unknown, err := credentials.ReadFile(file)
		if err != nil {
			return c, err
		}
		if len(unknown) > 0 {
			logf("credentials: %s ignores unknown names %s", file, strings.Join(unknown, ", "))
		}
		c = fc
	}
	if fd, err := strconv.Atoi(os.Getenv(hostd.CredentialsFDEnv)); err == nil && fd > 2 {
		os.Unsetenv(hostd.CredentialsFDEnv)
		f := os.NewFile(uintptr(fd), "credentials")
		data, err := io.ReadAll(io.LimitReader(f, credentials.MaxFileSize+1))
		f.Close()
		if err != nil {
			return c, fmt.Errorf("failed to read the credentials from start: %w", err)
		}
		piped, _, err := credentials.Parse(data)
		if err != nil {
			return c, fmt.Errorf("credentials from start: %w", err)
		}
		c = c.Merge(piped)
	}
	credentials.TakeEnv() // not used: keys come from start or the file only
	logf("credentials: the proxy holds %d (%s)", c.Len(), strings.Join(c.Names(), ", "))
	return c, nil
}

// proxyService builds the sandbox's proxy for the daemon.
func proxyService(sbe *sandbox.Env, sb *sandbox.Sandbox, creds credentials.Set, logf func(string, ...any)) (hostd.Service, error) {
	settings := sb.Egress.WithDefaults()
	var roots *x509.CertPool
	if settings.UpstreamCA != "" {
		pem, err := os.ReadFile(settings.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("failed to read the upstream CA file: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA file %q holds no PEM certificate", settings.UpstreamCA)
		}
	}
	pol := &livePolicy{load: func() (egress.Settings, error) { return sbe.EgressSettings(sb.Name) }, logf: logf}
	if _, err := pol.reload(); err != nil {
		return nil, err
	}
	return &proxy.Service{StateDir: sb.Dir.State(), Options: proxy.Options{
		Sandbox: sb.Name, Declared: sb.Declared, Policy: pol.get, Credentials: creds,
		Upstreams: settings.Upstreams, RootCAs: roots,
		Logf: logf,
	}}, nil
}

// livePolicy rereads the sandbox's egress settings at most once a second, so
// `keystone agent allow` (the registry) and a NixOS rebuild (declared.json)
// apply to the running proxy. A settings file that cannot be read keeps the
// last good policy.
type livePolicy struct {
	load func() (egress.Settings, error)
	logf func(string, ...any)
	mu   sync.Mutex
	cur  *egress.Policy
	at   time.Time
}

func (l *livePolicy) reload() (*egress.Policy, error) {
	s, err := l.load()
	if err != nil {
		return nil, err
	}
	return egress.Compile(s)
}

func (l *livePolicy) get() *egress.Policy {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil && time.Since(l.at) < time.Second {
		return l.cur
	}
	p, err := l.reload()
	l.at = time.Now()
	if err != nil {
		if l.cur == nil {
			p, _ = egress.Compile(egress.Settings{Mode: egress.None})
		} else {
			l.logf("egress: keeping the last policy: %v", err)
			return l.cur
		}
	}
	if l.cur != nil && (p.Mode != l.cur.Mode || strings.Join(p.Own(), " ") != strings.Join(l.cur.Own(), " ")) {
		l.logf("egress: policy now %s, own entries: %s", p.Mode, strings.Join(p.Own(), " "))
	}
	l.cur = p
	return p
}

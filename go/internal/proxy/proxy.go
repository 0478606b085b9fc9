// Package proxy is a sandbox's HTTP proxy on the host: the one way its guest
// reaches the network in user networking, and the only place its agents'
// API keys are used.
//
// The guest reaches it through qemu's guest forwarding (GuestAddress, see
// fdpass.go); it serves three kinds of request:
//   - provider routes, http://<proxy>/<provider>/…: forwarded over TLS to
//     that provider's configured upstream, where the placeholder key the
//     guest sent is replaced by the host's credential (route.go);
//   - absolute-URI requests (plain HTTP through a proxy) and
//   - CONNECT tunnels (HTTPS through a proxy), both checked against the
//     sandbox's egress policy and never given a key (forward.go).
//
// It must never send a credential anywhere but its provider's upstream,
// never dial an address the policy refuses (it resolves once and dials the
// address it checked), never buffer a whole request or response, and stay
// up whatever bytes the guest sends: every limit is below.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
)

// Limits on what one guest can make the proxy hold.
const (
	// MaxHeaderBytes bounds a request's header block (431 beyond).
	MaxHeaderBytes = 64 << 10
	// ReadHeaderTimeout ends a connection whose headers trickle in (slowloris).
	ReadHeaderTimeout = 20 * time.Second
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout = 2 * time.Minute
	// DefaultMaxConns bounds the guest's open connections (tunnels included);
	// more are answered 503 and closed.
	DefaultMaxConns = 256
	// DialTimeout bounds a DNS lookup and a TCP connect.
	DialTimeout = 15 * time.Second
)

// Options configure a Server.
type Options struct {
	Sandbox  string // the sandbox's name, for the refusal's command
	Declared bool   // declared in NixOS: the refusal names the option
	// Policy returns the current egress policy; it is asked on every request
	// so that `keystone agent allow` applies at once.
	Policy      func() *egress.Policy
	Credentials credentials.Set
	// Upstreams overrides providers' base URLs (credentials.ValidateUpstream).
	Upstreams map[string]string
	RootCAs   *x509.CertPool // trusted for upstreams; nil: the system's
	Resolver  Resolver       // nil: the host's resolver
	MaxConns  int            // 0: DefaultMaxConns
	// Refused is told every refusal (for status); Logf gets one line per
	// event, never a header or a credential.
	Refused func(target, reason string)
	Logf    func(format string, args ...any)
	// testOnlyHostAddrs replaces the host's interface addresses;
	// testOnlyReadHeaderTimeout, ReadHeaderTimeout.
	testOnlyHostAddrs         func() map[netip.Addr]bool
	testOnlyReadHeaderTimeout time.Duration
}

// Server serves one sandbox's guest.
type Server struct {
	o         Options
	upstreams map[string]*url.URL
	toAPI     *http.Transport // provider upstreams: TLS, verified
	dialer    *dialer
	forward   *http.Transport // plain HTTP to checked addresses
	http      *http.Server
}

// New checks o and builds the server.
func New(o Options) (*Server, error) {
	if o.Policy == nil {
		return nil, fmt.Errorf("proxy: no egress policy")
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Refused == nil {
		o.Refused = func(string, string) {}
	}
	s := &Server{o: o, upstreams: map[string]*url.URL{}}
	for _, p := range credentials.Providers {
		raw := p.DefaultUpstream
		if u, ok := o.Upstreams[p.Name]; ok {
			if err := credentials.ValidateUpstream(p.Name, u); err != nil {
				return nil, err
			}
			raw = u
		}
		u, err := url.Parse(strings.TrimSuffix(raw, "/"))
		if err != nil {
			return nil, err
		}
		s.upstreams[p.Name] = u
	}
	var resolver Resolver = net.DefaultResolver
	if o.Resolver != nil {
		resolver = o.Resolver
	}
	hostAddrs := (&hostAddrCache{}).get
	if o.testOnlyHostAddrs != nil {
		hostAddrs = o.testOnlyHostAddrs
	}
	s.dialer = &dialer{resolver: resolver, hostAddrs: hostAddrs, timeout: DialTimeout}
	s.toAPI = &http.Transport{
		Proxy:               nil, // the host's own proxy settings are not the sandbox's
		DialContext:         (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: DialTimeout,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 16,
		DisableCompression:  true, // bytes pass as the upstream sent them
	}
	s.forward = &http.Transport{
		Proxy:               nil,
		DialContext:         s.dialForward,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
		DisableCompression:  true,
	}
	rht := ReadHeaderTimeout
	if o.testOnlyReadHeaderTimeout > 0 {
		rht = o.testOnlyReadHeaderTimeout
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: rht,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{o.Logf}, "", 0),
	}
	return s, nil
}

// Serve answers the guest's connections from l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.http.Serve(limitListener(l, s.o.MaxConns))
}

// Shutdown stops accepting, lets requests in flight finish until ctx is
// done, then closes everything, tunnels included.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.http.Close()
	s.toAPI.CloseIdleConnections()
	s.forward.CloseIdleConnections()
	return err
}

// ServeHTTP dispatches one request of the guest.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		s.connect(w, r)
	case r.URL.IsAbs() && !isSelf(r.URL.Host):
		s.forwardHTTP(w, r)
	default:
		s.route(w, r)
	}
}

// refuse answers 403 with the one sentence an agent can act on.
func (s *Server) refuse(w http.ResponseWriter, err *RefusedError) {
	s.o.Refused(err.Target, err.Reason)
	msg := err.Error()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Keystone-Refused", msg)
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, msg+"\n")
}

// refusal builds the RefusedError for t, with the command that allows it.
func (s *Server) refusal(t target, addr, reason string) *RefusedError {
	entry := egress.EntryFor(t.host, t.port)
	if addr != "" {
		entry = egress.EntryFor(addr, t.port)
	}
	cmd := fmt.Sprintf("run on the host: keystone agent allow %s %s", s.o.Sandbox, entry)
	if s.o.Declared {
		cmd = fmt.Sprintf("add %q to keystone.agent.sandboxes.%s.egress.allow in the host's NixOS configuration", entry, s.o.Sandbox)
	}
	return &RefusedError{Target: t.String(), Addr: addr, Reason: reason, Command: cmd}
}

// fail answers a request the proxy cannot serve, in one line.
func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "keystone: "+format+"\n", args...)
}

// logWriter turns net/http's log lines into the daemon's.
type logWriter struct{ logf func(string, ...any) }

func (l logWriter) Write(p []byte) (int, error) {
	l.logf("proxy: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"

	"github.com/keystone-agent/keystone/internal/egress"
)

// check is the policy's first question for a destination the guest named.
func (s *Server) check(t target) (*egress.Policy, *RefusedError) {
	p := s.o.Policy()
	if p.AllowsHost(t.host, t.port) {
		return p, nil
	}
	reason := reasonNotAllowed
	if p.Mode == egress.None {
		reason = reasonNone
	}
	return nil, s.refusal(t, "", reason)
}

// admit parses the destination the guest named and checks it, answering
// the refusal itself.
func (s *Server) admit(w http.ResponseWriter, hostport string, defPort int) (*egress.Policy, target, bool) {
	t, err := parseTarget(hostport, defPort)
	if err != nil {
		s.refuse(w, &RefusedError{Target: "(invalid)", Reason: reasonBadTarget, Command: "name a DNS host or an IP address, and a port"})
		return nil, t, false
	}
	p, refused := s.check(t)
	if refused != nil {
		s.refuse(w, refused)
		return nil, t, false
	}
	return p, t, true
}

// forwardHTTP serves "GET http://host/path" as a plain forward proxy: to the
// host the URI names (its Host header is the URI's), never with a key.
func (s *Server) forwardHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme != "http" {
		fail(w, http.StatusBadRequest, "the proxy forwards http:// URLs; for https:// use CONNECT (set HTTPS_PROXY)")
		return
	}
	p, t, ok := s.admit(w, r.URL.Host, 80)
	if !ok {
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", r.URL.Host
			pr.Out.Host = ""
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), dialKey{}, dialInfo{p, t}))
		},
		Transport:     s.forward,
		FlushInterval: -1,
		ErrorLog:      s.http.ErrorLog,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			var re *RefusedError
			if errors.As(err, &re) {
				s.refuse(w, re)
				return
			}
			fail(w, http.StatusBadGateway, "cannot reach %s: %v", t, urlFree(err))
		},
	}
	rp.ServeHTTP(w, r)
}

// dialKey carries the checked policy and target to the forward transport's
// dial, which must dial that target and no other.
type dialKey struct{}

type dialInfo struct {
	policy *egress.Policy
	target target
}

func (s *Server) dialForward(ctx context.Context, _, _ string) (net.Conn, error) {
	di, ok := ctx.Value(dialKey{}).(dialInfo)
	if !ok {
		return nil, errors.New("proxy: a forward dial without a checked target")
	}
	return s.dialer.dial(ctx, di.policy, di.target, s.refusalErr)
}

func (s *Server) refusalErr(t target, addr, reason string) error { return s.refusal(t, addr, reason) }

// connect serves CONNECT host:port: a byte tunnel to a checked address. The
// proxy never sees inside (TLS is the guest's), so it never adds a key.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	p, t, ok := s.admit(w, r.Host, 0)
	if !ok {
		return
	}
	up, err := s.dialer.dial(r.Context(), p, t, s.refusalErr)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			s.refuse(w, re)
			return
		}
		fail(w, http.StatusBadGateway, "%v", err)
		return
	}
	rc := http.NewResponseController(w)
	conn, buf, err := rc.Hijack()
	if err != nil {
		up.Close()
		fail(w, http.StatusInternalServerError, "cannot open a tunnel: %v", err)
		return
	}
	defer conn.Close()
	defer up.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the guest sent after the request's headers are already buffered.
	if n := buf.Reader.Buffered(); n > 0 {
		b, _ := buf.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	splice(conn, up)
}

// splice copies both ways until both directions end, passing half-closes on.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// isSelf says whether an absolute URI names the proxy itself (a client
// that sends even the proxy's own routes through HTTP_PROXY).
func isSelf(hostport string) bool {
	return hostport == GuestAddress || hostport == GuestIP
}

package proxy

import (
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/keystone-agent/keystone/internal/credentials"
)

// route serves http://<proxy>/<provider>/<rest>: the request goes to the
// provider's upstream (whatever Host header the guest sent), its
// placeholder key replaced by the host's credential.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p, out, err := s.upstreamURL(r.URL)
	if err != nil {
		fail(w, http.StatusNotFound, "%v", err)
		return
	}
	ed, err := s.inject(p, r.Header, out)
	if err != nil {
		var me *missingError
		if errors.As(err, &me) {
			fail(w, http.StatusUnauthorized, "%v", err)
			return
		}
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = out
			pr.Out.Host = "" // the upstream's own host, never the guest's Host header
			ed.apply(pr.Out.Header)
		},
		Transport:     s.toAPI,
		FlushInterval: -1, // streamed responses (SSE) pass as they come
		ErrorLog:      s.http.ErrorLog,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			s.o.Logf("proxy: %s upstream %s: %v", p.Name, s.upstreams[p.Name].Host, urlFree(err))
			fail(w, http.StatusBadGateway, "the %s upstream %s did not answer: %v", p.Name, s.upstreams[p.Name].Host, urlFree(err))
		},
	}
	rp.ServeHTTP(w, r)
}

// upstreamURL maps the guest's path onto the provider's upstream. The
// upstream's scheme and host come only from the host's configuration; the
// guest's path is appended below the upstream's path and may not climb out
// of it with dot segments (a company gateway may serve other routes).
func (s *Server) upstreamURL(in *url.URL) (*credentials.Provider, *url.URL, error) {
	path := in.EscapedPath()
	name, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	p, ok := credentials.Lookup(name)
	if !ok || !strings.HasPrefix(path, "/") {
		return nil, nil, errors.New("no such route on the keystone proxy: use the provider base URLs of the sandbox's environment (" + routes() + ")")
	}
	rest = "/" + rest
	unescaped, err := url.PathUnescape(rest)
	if err != nil {
		return nil, nil, errors.New("the path is not valid URL encoding")
	}
	for _, seg := range strings.Split(unescaped, "/") {
		if seg == "." || seg == ".." {
			return nil, nil, errors.New("the path may not contain . or .. segments")
		}
	}
	base := s.upstreams[p.Name]
	out := &url.URL{Scheme: base.Scheme, Host: base.Host, RawQuery: in.RawQuery}
	out.Path = strings.TrimSuffix(base.Path, "/") + unescaped
	out.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + rest
	if out.RawPath == out.EscapedPath() {
		out.RawPath = ""
	}
	return p, out, nil
}

func routes() string {
	var rs []string
	for _, p := range credentials.Providers {
		rs = append(rs, "/"+p.Name+"/")
	}
	return strings.Join(rs, ", ")
}

// missingError: the guest sent a placeholder the host has no credential for.
type missingError struct{ v, provider string }

func (e *missingError) Error() string {
	return "the host has no " + e.v + " for " + e.provider + ": set it in the environment of `keystone agent start` or in the credentials file (docs/egress.md), then restart the sandbox"
}

// edits are the changes inject makes to the outgoing request's headers.
type edits struct {
	del []string
	set http.Header
}

func (e edits) apply(h http.Header) {
	for _, k := range e.del {
		h.Del(k)
	}
	for k, v := range e.set {
		h[k] = v
	}
}

// inject finds the provider's placeholders in the request's key slots and
// says how the outgoing request's headers change; a placeholder in the
// query is replaced in out. The placeholder's own kind of key replaces it
// where it is; when the host holds only another kind of the provider's
// (an OAuth token for an API key's placeholder), that key goes where its
// kind goes, with the beta feature it needs. A slot sent twice with a
// placeholder is refused: which copy an upstream reads is not ours to guess.
func (s *Server) inject(p *credentials.Provider, h http.Header, out *url.URL) (edits, error) {
	e := edits{set: http.Header{}}
	var q url.Values
	for _, slot := range p.Slots {
		var vals []string
		if slot.Query != "" {
			if q == nil {
				q = out.Query()
			}
			vals = q[slot.Query]
		} else {
			vals = h.Values(slot.Header)
		}
		for _, c := range p.Credentials {
			ph := credentials.Placeholder(c.Var)
			n := 0
			for _, v := range vals {
				if carries(v, slot.Prefix, ph) {
					n++
				}
			}
			if n == 0 {
				continue
			}
			if len(vals) != 1 {
				return e, errors.New("the request carries " + slotName(slot) + " more than once")
			}
			if key, ok := s.o.Credentials.Get(c.Var); ok {
				if slot.Query != "" {
					q.Set(slot.Query, key)
					out.RawQuery = q.Encode()
				} else {
					e.set[slot.Header] = []string{slot.Prefix + key}
				}
				continue
			}
			use, key, ok := s.otherKind(p, c)
			if !ok {
				return e, &missingError{v: c.Var, provider: p.Name}
			}
			if slot.Query != "" {
				q.Del(slot.Query)
				out.RawQuery = q.Encode()
			} else {
				e.del = append(e.del, slot.Header)
			}
			e.set[use.Slot.Header] = []string{use.Slot.Prefix + key}
			if p.BetaHeader != "" {
				betas := betaList(h.Values(p.BetaHeader), c.Beta, use.Beta)
				if len(betas) == 0 {
					e.del = append(e.del, p.BetaHeader)
				} else {
					e.set[p.BetaHeader] = []string{strings.Join(betas, ",")}
				}
			}
		}
	}
	return e, nil
}

// otherKind is a credential of p, other than c, that the host holds.
func (s *Server) otherKind(p *credentials.Provider, c credentials.Credential) (credentials.Credential, string, bool) {
	for _, o := range p.Credentials {
		if key, ok := s.o.Credentials.Get(o.Var); ok && o.Var != c.Var && o.Slot.Header != "" {
			return o, key, true
		}
	}
	return credentials.Credential{}, "", false
}

// betaList is a beta header's comma-separated features without drop, with add.
func betaList(vals []string, drop, add string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" && f != drop && f != add {
				out = append(out, f)
			}
		}
	}
	if add != "" {
		out = append(out, add)
	}
	return out
}

// carries says whether a slot's value is the placeholder ph after the
// slot's prefix (whose case HTTP leaves free: "bearer x" is "Bearer x").
func carries(v, prefix, ph string) bool {
	return len(v) == len(prefix)+len(ph) && strings.EqualFold(v[:len(prefix)], prefix) && v[len(prefix):] == ph
}

func slotName(s credentials.Slot) string {
	if s.Query != "" {
		return "the query parameter " + s.Query
	}
	return "the header " + s.Header
}

// urlFree keeps an error's cause without its URL, which may carry a key in
// its query (Gemini's ?key=).
func urlFree(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

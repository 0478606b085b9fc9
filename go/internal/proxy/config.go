package proxy

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keystone-agent/keystone/internal/egress"
)

// RootCAs returns the system's certificate authorities plus those of the PEM
// file caFile (--upstream-ca), or nil (the system's) when caFile is "".
func RootCAs(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read the upstream CA file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream CA file %q holds no PEM certificate", caFile)
	}
	return roots, nil
}

// LivePolicy returns Options.Policy for settings that load reads (the
// registry, declared.json), asked again at most once a second: `keystone
// agent allow` and a NixOS rebuild apply to a running proxy. Settings that
// cannot be read or are invalid keep the last good policy; with none yet,
// the first load's error is returned.
func LivePolicy(load func() (egress.Settings, error), logf func(string, ...any)) (func() *egress.Policy, error) {
	l := &livePolicy{load: load, logf: logf, now: time.Now}
	p, err := l.compile()
	if err != nil {
		return nil, err
	}
	l.cur, l.at = p, l.now()
	return l.get, nil
}

type livePolicy struct {
	load func() (egress.Settings, error)
	logf func(string, ...any)
	now  func() time.Time
	mu   sync.Mutex
	cur  *egress.Policy
	at   time.Time
}

func (l *livePolicy) compile() (*egress.Policy, error) {
	s, err := l.load()
	if err != nil {
		return nil, err
	}
	return egress.Compile(s)
}

func (l *livePolicy) get() *egress.Policy {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.now().Sub(l.at) < time.Second {
		return l.cur
	}
	l.at = l.now()
	p, err := l.compile()
	if err != nil {
		l.logf("egress: keeping the last policy: %v", err)
		return l.cur
	}
	if p.Mode != l.cur.Mode || strings.Join(p.Own(), " ") != strings.Join(l.cur.Own(), " ") {
		l.logf("egress: the policy is now %s, own entries: %s", p.Mode, strings.Join(p.Own(), " "))
	}
	l.cur = p
	return p
}

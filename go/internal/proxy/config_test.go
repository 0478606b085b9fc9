package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/egress"
)

func TestLivePolicy(t *testing.T) {
	settings, fail := egress.Settings{Mode: egress.Allowlist}, error(nil)
	var log strings.Builder
	get, err := LivePolicy(func() (egress.Settings, error) { return settings, fail },
		func(f string, a ...any) { log.WriteString(f + "\n") })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l := &livePolicy{load: func() (egress.Settings, error) { return settings, fail }, logf: func(string, ...any) {}, now: func() time.Time { return now }}
	l.cur, _ = l.compile()
	l.at = now
	settings.Allow = []string{"example.com"}
	if l.get().AllowsHost("example.com", 443) {
		t.Fatal("reloaded within the second")
	}
	now = now.Add(time.Second)
	if !l.get().AllowsHost("example.com", 443) {
		t.Fatal("not reloaded after a second")
	}
	fail = errors.New("registry is corrupt")
	now = now.Add(time.Second)
	if p := l.get(); p == nil || !p.AllowsHost("example.com", 443) {
		t.Fatal("a failed reload dropped the last good policy")
	}
	settings.Mode, fail = "closed", nil
	now = now.Add(time.Second)
	if p := l.get(); p == nil || p.Mode != egress.Allowlist {
		t.Fatal("an invalid policy replaced the last good one")
	}
	if get() == nil {
		t.Fatal("LivePolicy returned no policy")
	}
	if _, err := LivePolicy(func() (egress.Settings, error) { return egress.Settings{}, errors.New("x") }, nil); err == nil {
		t.Fatal("a first load that fails was accepted")
	}
}

func TestRootCAs(t *testing.T) {
	if p, err := RootCAs(""); p != nil || err != nil {
		t.Fatalf("no file: %v %v", p, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(bad, []byte("not pem"), 0o644)
	if _, err := RootCAs(bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a file without certificates: %v", err)
	}
	if _, err := RootCAs(bad + ".missing"); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

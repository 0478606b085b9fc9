package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/registry"
)

func TestSpecValidate(t *testing.T) {
	good := Spec{MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual"}
	if err := good.Validate(); err != nil {
		t.Fatalf("minimum spec refused: %v", err)
	}
	for name, mod := range map[string]func(*Spec){
		"memory 100":     func(s *Spec) { s.MemoryMB = 100 },
		"memory 2047":    func(s *Spec) { s.MemoryMB = 2047 },
		"vcpus 0":        func(s *Spec) { s.VCPUs = 0 },
		"vcpus -1":       func(s *Spec) { s.VCPUs = -1 },
		"network slirp":  func(s *Spec) { s.Network = "slirp" },
		"sync often":     func(s *Spec) { s.SyncMode = "often" },
		"name with /":    func(s *Spec) { s.Name = "a/b" },
		"name ..":        func(s *Spec) { s.Name = ".." },
		"name space":     func(s *Spec) { s.Name = "a b" },
		"name 200 chars": func(s *Spec) { s.Name = strings.Repeat("n", 200) },
		"agent cursor":   func(s *Spec) { s.Agent = "cursor" },
		"agent Claude":   func(s *Spec) { s.Agent = "Claude" },
	} {
		s := good
		mod(&s)
		var ue *UsageError
		if err := s.Validate(); !errors.As(err, &ue) {
			t.Errorf("%s: Validate() = %v; want a UsageError", name, err)
		}
	}
}

func TestSpecAgent(t *testing.T) {
	for _, a := range []string{"", "none", "claude", "codex", "gemini"} {
		s := Spec{MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual", Agent: a}
		if err := s.Validate(); err != nil {
			t.Errorf("--agent %q refused: %v", a, err)
		}
	}
	// The choice is remembered: no --agent keeps it, none drops it.
	for _, tc := range []struct{ asked, had, want string }{
		{"", "codex", "codex"}, {"claude", "codex", "claude"}, {"none", "codex", ""}, {"", "", ""},
	} {
		if got := (Spec{Agent: tc.asked}).agentFor(registry.Entry{Agent: tc.had}); got != tc.want {
			t.Errorf("--agent %q on a sandbox with %q: got %q; want %q", tc.asked, tc.had, got, tc.want)
		}
	}
}

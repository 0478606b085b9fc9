package sandbox

import (
	"errors"
	"strings"
	"testing"
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
	} {
		s := good
		mod(&s)
		var ue *UsageError
		if err := s.Validate(); !errors.As(err, &ue) {
			t.Errorf("%s: Validate() = %v; want a UsageError", name, err)
		}
	}
}

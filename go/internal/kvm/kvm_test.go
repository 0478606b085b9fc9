package kvm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "kvm")
	err := Check(missing)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check(missing) = %v; want ErrUnavailable and ErrNotExist", err)
	}
	if os.Getuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.WriteFile(ro, nil, 0o400)
		if err := Check(ro); !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Check(read-only) = %v; want ErrPermission", err)
		}
	}
	rw := filepath.Join(dir, "rw")
	os.WriteFile(rw, nil, 0o600)
	if err := Check(rw); err != nil {
		t.Fatalf("Check(read-write) = %v; want nil", err)
	}
}

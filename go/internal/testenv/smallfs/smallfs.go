// Package smallfs gives tests a real file system that fills up: a small tmpfs
// mounted for the test and unmounted after it. Mounting needs root; without
// root the test is skipped with the reason, except under CI=true, where the
// tests run as root and a missing mount fails them instead.
//
// It imports nothing of keystone's, so every package's tests can use it.
package smallfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory and
// returns the directory.
func Mount(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	if err != nil {
		why := fmt.Sprintf("cannot mount a small tmpfs to fill up (needs root): %v", err)
		if os.Getenv("CI") != "" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes into dir until its file system has no space left.
func Fill(t testing.TB, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Make sure not even a small file fits any more.
	if err := os.WriteFile(filepath.Join(dir, ".probe"), chunk, 0o600); err == nil {
		os.Remove(filepath.Join(dir, ".probe"))
		t.Fatalf("fill %s: a 4 KiB file still fits", dir)
	}
	os.Remove(filepath.Join(dir, ".probe"))
}

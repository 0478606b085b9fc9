package untrusted

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Each open of a FIFO nobody writes to returns at once (a plain open would
// wait for a writer for good); OpenDir refuses it.
func TestOpeningAFIFONeverBlocks(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for name, open := range map[string]func() (*os.File, error){
		"Open":     func() (*os.File, error) { return Open(root, "fifo") },
		"OpenPath": func() (*os.File, error) { return OpenPath(filepath.Join(dir, "fifo")) },
		"OpenDir":  func() (*os.File, error) { return OpenDir(root, "fifo") },
	} {
		done := make(chan error, 1)
		go func() {
			f, err := open()
			if err == nil {
				fi, serr := f.Stat()
				if serr == nil && fi.Mode().IsRegular() {
					err = errors.New("a FIFO reported as a regular file")
				}
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if name == "OpenDir" && !errors.Is(err, syscall.ENOTDIR) {
				t.Errorf("OpenDir of a FIFO = %v; want ENOTDIR", err)
			}
			if name != "OpenDir" && err != nil {
				t.Errorf("%s of a FIFO = %v; want it opened, for the caller's fstat to refuse", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s blocked on a FIFO", name)
		}
	}
}

// OpenPath does not follow a link as its last component.
func TestOpenPathRefusesALink(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	os.Symlink("file", filepath.Join(dir, "link"))
	if f, err := OpenPath(filepath.Join(dir, "link")); err == nil {
		f.Close()
		t.Fatal("OpenPath followed a link")
	}
}

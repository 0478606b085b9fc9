package gitsync

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// rootReadlink reads a symlink inside r, like (*os.Root).Readlink of Go 1.25,
// for the Go 1.24 the pinned nixpkgs builds with: the parent is opened
// through r and readlinkat(2) reads the final component without following it.
func rootReadlink(r *os.Root, name string) (string, error) {
	d, err := r.Open(path.Dir(name))
	if err != nil {
		return "", err
	}
	defer d.Close()
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(d.Fd()), path.Base(name), buf)
		if err != nil {
			return "", &os.PathError{Op: "readlinkat", Path: name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

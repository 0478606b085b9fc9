package gitsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-billy/v5"
)

// rootFS is a read-only billy.Filesystem over an os.Root: the kernel-assisted
// resolution of os.Root keeps every path, symbolic links included, inside the
// directory, for one openat walk per open. go-git reads the hostile workspace's
// .git through it; osfs's bound mode does the same in user space with an lstat
// per path component on every open, which dominated the cost of a sync.
type rootFS struct {
	r    *os.Root
	path string
}

var errReadOnly = errors.New("the workspace repository is opened read-only")

func openRootFS(dir string) (*rootFS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &rootFS{r: r, path: dir}, nil
}

func (f *rootFS) Close() error { return f.r.Close() }

func rel(name string) string {
	name = filepath.Clean("/" + name)
	if name == "/" {
		return "."
	}
	return name[1:]
}

func (f *rootFS) Open(name string) (billy.File, error) { return f.OpenFile(name, os.O_RDONLY, 0) }

func (f *rootFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
	}
	file, err := f.r.OpenFile(rel(name), flag, perm)
	if err != nil {
		return nil, err
	}
	return rootFile{File: file, name: name}, nil
}

func (f *rootFS) Stat(name string) (os.FileInfo, error)  { return f.r.Stat(rel(name)) }
func (f *rootFS) Lstat(name string) (os.FileInfo, error) { return f.r.Lstat(rel(name)) }
func (f *rootFS) Readlink(name string) (string, error)   { return rootReadlink(f.r, rel(name)) }
func (f *rootFS) Join(elem ...string) string             { return filepath.Join(elem...) }
func (f *rootFS) Root() string                           { return f.path }

func (f *rootFS) ReadDir(name string) ([]os.FileInfo, error) {
	d, err := f.r.Open(rel(name))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]os.FileInfo, 0, len(entries))
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			out = append(out, fi)
		}
	}
	return out, nil
}

func (f *rootFS) Chroot(name string) (billy.Filesystem, error) {
	r, err := f.r.OpenRoot(rel(name))
	if err != nil {
		return nil, err
	}
	return &rootFS{r: r, path: filepath.Join(f.path, rel(name))}, nil
}

func (f *rootFS) Create(string) (billy.File, error)           { return nil, errReadOnly }
func (f *rootFS) Rename(string, string) error                 { return errReadOnly }
func (f *rootFS) Remove(string) error                         { return errReadOnly }
func (f *rootFS) TempFile(string, string) (billy.File, error) { return nil, errReadOnly }
func (f *rootFS) MkdirAll(string, os.FileMode) error          { return errReadOnly }
func (f *rootFS) Symlink(string, string) error                { return errReadOnly }
func (f *rootFS) Capabilities() billy.Capability              { return billy.ReadCapability | billy.SeekCapability }

// rootFile is an *os.File as a billy.File; locking is for writers only.
type rootFile struct {
	*os.File
	name string
}

func (f rootFile) Name() string         { return f.name }
func (f rootFile) Lock() error          { return nil }
func (f rootFile) Unlock() error        { return nil }
func (f rootFile) Truncate(int64) error { return errReadOnly }

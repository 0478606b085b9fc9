// Package untrusted opens files that a sandbox controls (its workspace, its
// .git) without ever blocking: opening a FIFO for reading blocks until a
// writer comes, so a hostile sandbox that put one where keystone reads a
// file (a .gitignore, .git/HEAD, a pack) would hang a sync, the watcher or
// a copy for good. Every such open is O_NONBLOCK; the caller then checks
// with fstat that it opened a regular file before it reads a byte (reads of
// a regular file ignore O_NONBLOCK).
package untrusted

import (
	"os"
	"syscall"
)

// openatFlags are the flags for an openat(2) of a file in a sandbox's
// directory: read only, never through a link, never blocking.
const openatFlags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// DirOpenatFlags are the flags for an openat(2) of a subdirectory of a
// sandbox's directory: nothing but a directory (the kernel refuses anything
// else before opening it), never through a link.
const DirOpenatFlags = syscall.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// Open opens name inside root for reading, without blocking.
func Open(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// OpenDir opens the directory name inside root to read its entries; with
// O_DIRECTORY the kernel refuses anything else there before opening it.
func OpenDir(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}

// OpenAt opens the file name of the directory dirfd for reading, without
// blocking and not through a link.
func OpenAt(dirfd int, name string) (*os.File, error) {
	return openAt(dirfd, name, openatFlags)
}

// OpenDirAt opens the subdirectory name of the directory dirfd, not through
// a link.
func OpenDirAt(dirfd int, name string) (*os.File, error) {
	return openAt(dirfd, name, DirOpenatFlags)
}

func openAt(dirfd int, name string, flags int) (*os.File, error) {
	fd, err := syscall.Openat(dirfd, name, flags, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// OpenPath opens the file at path for reading, without blocking and not
// through a link as its last component.
func OpenPath(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

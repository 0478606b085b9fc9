package testguest

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks into its
// initramfs. Writing it here, rather than with cpio(1), lets every file be
// owned by root and lets the archive hold device nodes without running as root.
type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	n   int64 // bytes written, for padding
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
}

// cpio mode bits; fs.FileMode does not use the Unix encoding.
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// header writes one entry header and its padded name.
func (c *cpioWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32) error {
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize,
	// devmajor, devminor, rdevmajor, rdevminor, namesize, check.
	// uid, gid and mtime are 0 so the archive depends only on its contents.
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

// pad aligns the stream to 4 bytes, as newc requires after names and data.
func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// Dir adds a directory; its parents must have been added before.
func (c *cpioWriter) Dir(name string, perm fs.FileMode) error {
	return c.header(name, cpioDir|uint32(perm.Perm()), 0, 0, 0)
}

// File adds a regular file with the given contents.
func (c *cpioWriter) File(name string, perm fs.FileMode, data []byte) error {
	if err := c.header(name, cpioRegular|uint32(perm.Perm()), len(data), 0, 0); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

// Symlink adds a symbolic link to target.
func (c *cpioWriter) Symlink(name, target string) error {
	if err := c.header(name, cpioSymlink|0o777, len(target), 0, 0); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad()
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return c.header(name, cpioCharDev|uint32(perm.Perm()), 0, major, minor)
}

// Close writes the trailer and flushes; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	if err := c.header("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

package gitsync

import (
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/untrusted"
)

// entryDirs opens the directories of the index's paths one component at a
// time with O_NOFOLLOW, so no link is followed, as git does not follow one
// inside a tracked path (a file under a directory that became a link counts
// as deleted). Entries come in index order, where everything under "a/b/"
// is contiguous: each directory is opened once and its parents stay open
// while it is, and each entry then costs one fstatat(2) instead of a walk
// from the top.
type entryDirs struct {
	top   int      // the workspace
	names []string // the open chain's components
	fds   []int    // their descriptors; -1: missing, not a directory, or a link
}

func openEntryDirs(workspace string) (*entryDirs, error) {
	fd, err := unix.Open(workspace, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: workspace, Err: err}
	}
	return &entryDirs{top: fd}, nil
}

// dir returns the descriptor of the directory holding p, a path of the index
// ("src/main.go": src), or -1 when a component of it is missing, not a
// directory, or a link.
func (d *entryDirs) dir(p string) int {
	parent := path.Dir(p)
	if parent == "." {
		d.truncate(0)
		return d.top
	}
	comps := strings.Split(parent, "/")
	k := 0
	for k < len(comps) && k < len(d.names) && comps[k] == d.names[k] {
		k++
	}
	d.truncate(k)
	for _, c := range comps[k:] {
		fd := -1
		if at := d.last(); at >= 0 {
			if f, err := unix.Openat(at, c, untrusted.DirOpenatFlags, 0); err == nil {
				fd = f
			}
		}
		d.names, d.fds = append(d.names, c), append(d.fds, fd)
	}
	return d.last()
}

// last is the descriptor of the open chain's deepest directory.
func (d *entryDirs) last() int {
	if len(d.fds) == 0 {
		return d.top
	}
	return d.fds[len(d.fds)-1]
}

// truncate closes the chain's directories from depth k on.
func (d *entryDirs) truncate(k int) {
	for _, fd := range d.fds[k:] {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	d.names, d.fds = d.names[:k], d.fds[:k]
}

func (d *entryDirs) close() {
	d.truncate(0)
	unix.Close(d.top)
}

// readlinkAt reads the link name in the directory at without following it.
func readlinkAt(at int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(at, name, buf)
		if err != nil {
			return "", &os.PathError{Op: "readlinkat", Path: name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Package artifacts copies build output (dist/, build/, target/, .next/, out/)
// from a sandbox's workspace into the host project for `sync --artifacts`.
//
// The workspace is written by the agent, so it is read as hostile. Every
// directory on both sides is opened as an os.Root of its own, one level below
// its parent's: no path resolves outside the workspace or the project, a
// symbolic link is never followed nor copied (an entry that is not what it
// was when listed is skipped), and every operation resolves one name, so the
// time is linear in the number of entries however deep the tree. Only regular
// files and directories travel, without setuid, setgid or sticky bits; sparse
// files stay sparse; temporary files have names the sandbox cannot predict.
// The limits below bound what one copy writes. Every entry not copied is
// reported with the reason, and nothing in the project is deleted.
package artifacts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/untrusted"
)

// Dirs are the build directories the user guide promises to sync.
var Dirs = []string{"dist", "build", "target", ".next", "out"}

// Limits of one copy (docs/sync.md, "Limits"): what is over them is skipped
// with the reason.
const (
	MaxBytes = 8 << 30 // data written (a sparse file's holes do not count)
	MaxFiles = 500_000 // files copied
	MaxDepth = 256     // directory levels below the workspace
)

// Report says what was copied and what was not.
type Report struct {
	Copied  []string  `json:"copied"` // files, relative to the project
	Bytes   int64     `json:"bytes"`  // data written
	Skipped []Skipped `json:"skipped"`
}

// Skipped is an entry left alone, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Copy copies Dirs from workspace into project, replacing files of the same name
// and keeping everything else in the project. A missing directory is not an error.
func Copy(ctx context.Context, workspace, project string) (*Report, error) {
	src, err := os.OpenRoot(workspace)
	if err != nil {
		return nil, fmt.Errorf("cannot open workspace %q: %w", workspace, err)
	}
	defer src.Close()
	dst, err := os.OpenRoot(project)
	if err != nil {
		return nil, fmt.Errorf("cannot open project %q: %w", project, err)
	}
	defer dst.Close()
	c := &copier{rep: &Report{Copied: []string{}, Skipped: []Skipped{}}, maxBytes: MaxBytes}
	for _, d := range Dirs {
		fi, err := src.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return c.rep, err
		}
		if err := c.entry(ctx, src, dst, d, d, fi, 1); err != nil {
			return c.rep, err
		}
	}
	return c.rep, nil
}

type copier struct {
	rep      *Report
	maxBytes int64
}

func (c *copier) skip(p, reason string) { c.rep.Skipped = append(c.rep.Skipped, Skipped{p, reason}) }

// entry copies the entry name of src (listed as fi) into dst; p is its path
// for the report.
func (c *copier) entry(ctx context.Context, src, dst *os.Root, name, p string, fi fs.FileInfo, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch t := fi.Mode().Type(); {
	case t.IsDir():
		if depth > MaxDepth {
			c.skip(p, fmt.Sprintf("more than %d directories deep, not copied", MaxDepth))
			return nil
		}
		return c.dir(ctx, src, dst, name, p, fi, depth)
	case t.IsRegular():
		if err := c.file(src, dst, name, p, fi); err != nil {
			c.skip(p, err.Error())
		}
	default:
		c.skip(p, kind(t)+", not copied")
	}
	return nil
}

// dir copies the directory name of src into dst, one level down on both sides.
func (c *copier) dir(ctx context.Context, src, dst *os.Root, name, p string, fi fs.FileInfo, depth int) error {
	in, err := openDir(src, name, fi)
	if err != nil {
		c.skip(p, err.Error())
		return nil
	}
	defer in.Close()
	out, err := makeDir(dst, name)
	if err != nil {
		c.skip(p, err.Error())
		return nil
	}
	defer out.Close()
	d, err := in.Open(".")
	if err != nil {
		c.skip(p, "unreadable: "+err.Error())
		return nil
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		c.skip(p, "unreadable: "+err.Error())
		return nil
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		info, err := e.Info() // lstat: a link is reported as such
		if err != nil {
			continue // gone since the listing
		}
		if err := c.entry(ctx, in, out, e.Name(), path.Join(p, e.Name()), info, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// openDir opens the directory name of r, as listed: not a link to elsewhere,
// not swapped since.
func openDir(r *os.Root, name string, listed fs.FileInfo) (*os.Root, error) {
	sub, err := r.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("cannot open: %w", err)
	}
	fi, err := sub.Stat(".")
	if err != nil || !os.SameFile(fi, listed) {
		sub.Close()
		return nil, errors.New("changed while copying, not copied")
	}
	return sub, nil
}

// makeDir makes name a directory of r (or finds one there, never through a
// link) and opens it.
func makeDir(r *os.Root, name string) (*os.Root, error) {
	fi, err := r.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.Mkdir(name, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create the project's directory: %w", err)
		}
		if fi, err = r.Lstat(name); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("cannot inspect the project's entry: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("the project has a %s here, not a directory", kind(fi.Mode()))
	}
	return openDir(r, name, fi)
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

// file copies one regular file through a temporary name in the same directory,
// then renames it over the old file: an interrupted copy leaves the old file.
func (c *copier) file(src, dst *os.Root, name, p string, listed fs.FileInfo) error {
	if len(c.rep.Copied) >= MaxFiles {
		return fmt.Errorf("over the limit of %d files per copy, not copied", MaxFiles)
	}
	in, err := untrusted.Open(src, name)
	if err != nil {
		return fmt.Errorf("cannot open: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat() // the file actually opened, not the name listed
	if err != nil || !fi.Mode().IsRegular() || !os.SameFile(fi, listed) {
		return errors.New("changed while copying, not copied")
	}
	if old, err := dst.Lstat(name); err == nil && !old.Mode().IsRegular() {
		return fmt.Errorf("the project has a %s here, not replaced", kind(old.Mode()))
	}
	tmp, err := tempName()
	if err != nil {
		return err
	}
	out, err := dst.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()&0o777)
	if err != nil {
		return fmt.Errorf("cannot write: %w", err)
	}
	n, err := copySparse(out, in, fi.Size(), c.maxBytes-c.rep.Bytes)
	if err == nil {
		err = out.Chmod(fi.Mode().Perm() & 0o777)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rootRename(dst, tmp, name)
	}
	if err != nil {
		dst.Remove(tmp)
		if errors.Is(err, errOverLimit) {
			return fmt.Errorf("over the limit of %d bytes of data per copy, not copied", c.maxBytes)
		}
		return fmt.Errorf("cannot write: %w", err)
	}
	c.rep.Copied = append(c.rep.Copied, p)
	c.rep.Bytes += n
	return nil
}

// tempName is a name in the project the sandbox cannot guess, so it cannot
// place something there first.
func tempName() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return ".keystone-tmp-" + hex.EncodeToString(b[:]), nil
}

var errOverLimit = errors.New("over the limit")

// copySparse copies the data of in (size bytes) to out, leaving holes where
// in has holes (SEEK_DATA/SEEK_HOLE), and fails with errOverLimit before
// writing more than limit bytes of data. It returns the data bytes written.
func copySparse(out, in *os.File, size, limit int64) (int64, error) {
	var written int64
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			data = off // no hole support: copy everything
		}
		end, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		end = min(end, size)
		if written+(end-data) > limit {
			return written, errOverLimit
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return written, err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return written, err
		}
		n, err := io.CopyN(out, in, end-data)
		written += n
		if err != nil {
			return written, err
		}
		off = end
	}
	return written, out.Truncate(size)
}

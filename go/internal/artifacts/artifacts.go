// Package artifacts copies build output (dist/, build/, target/, .next/, out/)
// from a sandbox's workspace into the host project for `sync --artifacts`.
//
// The workspace is written by the agent, so it is read as hostile: both sides
// are opened as os.Root, so no path resolves outside the workspace or the
// project, symbolic links are never followed nor copied, only regular files
// and directories travel, and no setuid, setgid or sticky bit survives. Every
// entry not copied is reported with the reason.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Dirs are the build directories the user guide promises to sync.
var Dirs = []string{"dist", "build", "target", ".next", "out"}

// Report says what was copied and what was not.
type Report struct {
	Copied  []string  `json:"copied"` // files, relative to the project
	Bytes   int64     `json:"bytes"`
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
	c := &copier{src: src, dst: dst, rep: &Report{Copied: []string{}, Skipped: []Skipped{}}}
	for _, d := range Dirs {
		if err := c.tree(ctx, d); err != nil {
			return c.rep, err
		}
	}
	return c.rep, nil
}

type copier struct {
	src, dst *os.Root
	rep      *Report
}

func (c *copier) skip(p, reason string) { c.rep.Skipped = append(c.rep.Skipped, Skipped{p, reason}) }

// tree copies one top-level directory. fs.WalkDir reads entries with lstat
// semantics: a symbolic link is reported as such and never descended into.
func (c *copier) tree(ctx context.Context, top string) error {
	fi, err := c.src.Lstat(top)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		c.skip(top, kind(fi.Mode())+", not a directory")
		return nil
	}
	return fs.WalkDir(c.src.FS(), top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			c.skip(p, "unreadable: "+err.Error())
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			if err := c.mkdir(p); err != nil {
				c.skip(p, err.Error())
				return fs.SkipDir
			}
		case t.IsRegular():
			if err := c.file(p); err != nil {
				c.skip(p, err.Error())
			}
		default:
			c.skip(p, kind(t)+", not copied")
		}
		return nil
	})
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

// mkdir makes p a directory in the project, refusing to go through a link.
func (c *copier) mkdir(p string) error {
	fi, err := c.dst.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c.dst.Mkdir(p, 0o755)
	case err != nil:
		return fmt.Errorf("cannot inspect the project's %s: %w", p, err)
	case !fi.IsDir():
		return fmt.Errorf("the project has a %s here, not a directory", kind(fi.Mode()))
	}
	return nil
}

// file copies one regular file through a temporary name in the same directory,
// then renames it over the old file: an interrupted copy leaves the old file.
func (c *copier) file(p string) error {
	in, err := c.src.Open(p)
	if err != nil {
		return fmt.Errorf("cannot open: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat() // the file actually opened, not the name checked before
	if err != nil || !fi.Mode().IsRegular() {
		return errors.New("changed while copying, not copied")
	}
	if old, err := c.dst.Lstat(p); err == nil && !old.Mode().IsRegular() {
		return fmt.Errorf("the project has a %s here, not replaced", kind(old.Mode()))
	}
	tmp := path.Join(path.Dir(p), ".keystone-tmp-"+path.Base(p))
	out, err := c.dst.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()&0o777)
	if err != nil {
		return fmt.Errorf("cannot write: %w", err)
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Chmod(fi.Mode().Perm() & 0o777)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rootRename(c.dst, tmp, p)
	}
	if err != nil {
		c.dst.Remove(tmp)
		return fmt.Errorf("cannot write: %w", err)
	}
	c.rep.Copied = append(c.rep.Copied, p)
	c.rep.Bytes += n
	return nil
}

package artifacts

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// rootRename renames oldname to newname inside r, like (*os.Root).Rename of
// Go 1.25, for the Go 1.24 the pinned nixpkgs builds with. Both parents are
// opened through r (so they cannot lead out of it) and renameat(2) works on
// final components, which it never follows.
func rootRename(r *os.Root, oldname, newname string) error {
	od, err := r.Open(path.Dir(oldname))
	if err != nil {
		return err
	}
	defer od.Close()
	nd, err := r.Open(path.Dir(newname))
	if err != nil {
		return err
	}
	defer nd.Close()
	if err := unix.Renameat(int(od.Fd()), path.Base(oldname), int(nd.Fd()), path.Base(newname)); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

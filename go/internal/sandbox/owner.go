package sandbox

import (
	"io/fs"
	"os"
	"path/filepath"
)

// rootGuestID is the owner given to a workspace that root created: the
// guest's sandbox user takes the workspace owner's uid (so 9p shows exact
// owners on both sides), and that user must never be root in the guest.
const rootGuestID = 1000

// giveAwayFromRoot makes a root-owned workspace belong to rootGuestID.
// Only a helper running as root gets here; it can still read everything,
// and sync reads the workspace in-process, so the owner change costs nothing.
// Links are changed themselves (Lchown), never followed.
func giveAwayFromRoot(workspace string) error {
	st, err := os.Lstat(workspace)
	if err != nil || os.Geteuid() != 0 {
		return err
	}
	if uid, _ := ownerOf(st); uid != 0 {
		return nil
	}
	return filepath.WalkDir(workspace, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, rootGuestID, rootGuestID)
	})
}

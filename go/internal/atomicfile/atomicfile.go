// Package atomicfile replaces files so that a reader, a crash or a full disk
// never leaves a half-written one: every file keystone writes under the state
// directory (the registry, keys, pid files, sync status, links) goes through it.
//
// The order is the one that survives a power cut: a temporary name in the same
// directory that nobody can predict, created exclusively (O_EXCL: nothing
// planted there is followed or reused), its mode set on the open file, the data
// written, the file fsynced and closed, renamed over the target, and the
// directory fsynced so the rename itself is durable. Every step's error is
// checked; on a failure before the rename the temporary file is removed and
// the target is left exactly as it was. ReadJSON reads such a file back,
// bounded in size.
package atomicfile

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// tempPattern names the temporary files of path (os.CreateTemp's pattern).
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// RemoveLeftovers removes the temporary files a process killed during a
// Write of path left beside it: for a directory whose every entry matters,
// such as a build source that is copied whole.
func RemoveLeftovers(path string) error {
	tmps, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		return err
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("failed to remove %q: %w", t, err)
		}
	}
	return nil
}

// Write replaces path with data, with mode perm. The directory must exist.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := fill(f, data, perm); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return SyncDir(dir)
}

// fill writes data into the new file f, makes it durable and closes it.
func fill(f *os.File, data []byte, perm os.FileMode) error {
	// CreateTemp makes 0600; the mode is set on the descriptor, never on a path.
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Symlink points link at target atomically: a new link under a temporary
// name nobody can predict, renamed over link, then the directory fsynced.
func Symlink(target, link string) error {
	dir := filepath.Dir(link)
	for attempt := 1; ; attempt++ {
		tmp := filepath.Join(dir, "."+filepath.Base(link)+".tmp-"+rand.Text())
		// symlink(2) never replaces an existing name, so nothing planted is reused.
		err := os.Symlink(target, tmp)
		if errors.Is(err, os.ErrExist) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to link %q: %w", link, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("failed to link %q: %w", link, err)
		}
		return SyncDir(dir)
	}
}

// SyncDir fsyncs a directory, making the renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("failed to sync directory %q: %w", dir, err)
	}
	return nil
}

// maxJSON bounds ReadJSON: the state files it reads are a few KB; a larger
// one is not keystone's.
const maxJSON = 1 << 20

// ReadJSON decodes the JSON file at path, written whole by Write, into v.
// A missing file leaves v as it is and is not an error; what names the file
// in errors ("sync status").
func ReadJSON(path, what string, v any) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return err
	}
	if len(b) > maxJSON {
		return fmt.Errorf("%s %q is too large", what, path)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("corrupt %s %q: %w", what, path, err)
	}
	return nil
}

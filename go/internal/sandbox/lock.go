package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"
)

// ErrBusy says another keystone command is starting, stopping or destroying
// the same sandbox.
var ErrBusy = errors.New("busy")

// lockSandbox takes the sandbox's lock without waiting: one start, stop or
// destroy of a sandbox at a time, and the second is refused, not queued.
func lockSandbox(sb *Sandbox) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(sb.Dir.Root()), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the state directory: %w", err)
	}
	lk := flock.New(sb.Dir.Lock())
	ok, err := lk.TryLock()
	if err != nil {
		return nil, fmt.Errorf("failed to lock sandbox %q: %w", sb.Name, err)
	}
	if !ok {
		return nil, fmt.Errorf("sandbox %q is %w: another keystone command holds %s", sb.Name, ErrBusy, lk.Path())
	}
	return lk, nil
}

// removeDir removes the sandbox's directory so that a kill at any moment
// leaves it whole or gone, never a workspace missing part of its files,
// which the next start would boot on as the agent's work: it is renamed
// aside, then removed, with whatever a killed removal left aside. Where the
// rename fails (a full disk can refuse one), it is removed in place.
func removeDir(sb *Sandbox) error {
	var suffix [8]byte
	rand.Read(suffix[:])
	aside := strings.Replace(sb.Dir.Discarded(), "*", hex.EncodeToString(suffix[:]), 1)
	var errs []error
	if err := os.Rename(sb.Dir.Root(), aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if err := os.RemoveAll(sb.Dir.Root()); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove %q: %w", sb.Dir.Root(), err))
		}
	}
	// the directory set aside just now, with any a killed removal left
	return errors.Join(append(errs, removeDiscarded(sb))...)
}

// removeDiscarded removes what a killed removal of the sandbox's directory
// left aside.
func removeDiscarded(sb *Sandbox) error {
	left, _ := filepath.Glob(sb.Dir.Discarded())
	var errs []error
	for _, dir := range left {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove %q: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

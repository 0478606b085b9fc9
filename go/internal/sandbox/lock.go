package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

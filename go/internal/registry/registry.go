// Package registry owns sandboxes.json: what was declared for each sandbox
// created with `keystone agent start` (name, project, resources, port, pinned
// host key).
//
// It never stores whether a sandbox runs: that is derived from evidence every
// time (package sandbox). Reads need no lock because every write replaces the
// file atomically (temp file in the same directory, fsync, rename);
// read-modify-write happens under an exclusive file lock so concurrent
// commands never lose an entry. A corrupt file is reported, never overwritten.
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/gofrs/flock"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/names"
)

// Version is the format version written to sandboxes.json.
const Version = 1

// Entry is one sandbox as declared at creation. JSON field names are an API.
type Entry struct {
	Name        string    `json:"name"`
	ProjectPath string    `json:"projectPath"`
	MemoryMB    int       `json:"memory"`
	VCPUs       int       `json:"vcpus"`
	Nested      bool      `json:"nested"`
	Network     string    `json:"network"`
	SyncMode    string    `json:"syncMode"`
	SSHPort     int       `json:"sshPort"`
	HostKey     string    `json:"hostKey"`          // guest host key, authorized_keys format: pinned
	Runner      string    `json:"runner,omitempty"` // prebuilt runner dir; empty: built with nix
	Agent       string    `json:"agent,omitempty"`  // the agent of the session (start --agent); empty: none
	Created     time.Time `json:"created"`
	// Egress is the proxy's policy and upstreams (zero: allowlist, defaults).
	Egress egress.Settings `json:"egress,omitzero"`
}

type file struct {
	Version   int               `json:"version"`
	Sandboxes map[string]*Entry `json:"sandboxes"`
}

// ErrNotFound is returned for a name the registry does not hold.
var ErrNotFound = errors.New("sandbox not found")

// CorruptError says the registry file cannot be parsed; it is left untouched.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("registry %q is corrupt: %v", e.Path, e.Err)
}

// Hint says what to do; the file was left as it was.
func (e *CorruptError) Hint() string { return "it was not changed; move it aside to start over" }

func (e *CorruptError) Unwrap() error { return e.Err }

// Registry is sandboxes.json and its lock file.
type Registry struct {
	path, lock string
}

// New returns the registry stored at path, locked through lockPath.
func New(path, lockPath string) *Registry { return &Registry{path: path, lock: lockPath} }

// Path is the registry file.
func (r *Registry) Path() string { return r.path }

// List returns every entry, sorted by name.
func (r *Registry) List() ([]Entry, error) {
	f, err := r.read()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(f.Sandboxes))
	for _, e := range f.Sandboxes {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns one entry, or an error wrapping ErrNotFound.
func (r *Registry) Get(name string) (Entry, error) {
	f, err := r.read()
	if err != nil {
		return Entry{}, err
	}
	e, ok := f.Sandboxes[name]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return *e, nil
}

// Tx is a read-modify-write of the registry under its lock.
type Tx struct{ f *file }

// Get returns the entry for name and whether it exists.
func (t *Tx) Get(name string) (Entry, bool) {
	e, ok := t.f.Sandboxes[name]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Put adds or replaces an entry.
func (t *Tx) Put(e Entry) { t.f.Sandboxes[e.Name] = &e }

// Delete removes an entry, if present.
func (t *Tx) Delete(name string) { delete(t.f.Sandboxes, name) }

// Entries returns every entry (unsorted).
func (t *Tx) Entries() []Entry {
	out := make([]Entry, 0, len(t.f.Sandboxes))
	for _, e := range t.f.Sandboxes {
		out = append(out, *e)
	}
	return out
}

// Update runs fn under the registry lock and writes the result atomically
// when fn returns nil. An error from fn leaves the file as it was.
func (r *Registry) Update(fn func(*Tx) error) error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("failed to create the state directory: %w", err)
	}
	lk := flock.New(r.lock)
	if err := lk.Lock(); err != nil {
		return fmt.Errorf("failed to lock the registry %q: %w", r.lock, err)
	}
	defer lk.Unlock()
	f, err := r.read()
	if err != nil {
		return err
	}
	if err := fn(&Tx{f: f}); err != nil {
		return err
	}
	return r.write(f)
}

func (r *Registry) read() (*file, error) {
	data, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &file{Version: Version, Sandboxes: map[string]*Entry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the registry: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, &CorruptError{Path: r.path, Err: err}
	}
	if f.Version != Version {
		return nil, &CorruptError{Path: r.path, Err: fmt.Errorf("unknown version %d", f.Version)}
	}
	if f.Sandboxes == nil {
		f.Sandboxes = map[string]*Entry{}
	}
	for name, e := range f.Sandboxes {
		// A name becomes a path under the state directory: one read from the
		// file is held to the rules of one typed on the command line.
		if err := names.Validate(name); err != nil {
			return nil, &CorruptError{Path: r.path, Err: err}
		}
		if e == nil || e.Name != name {
			return nil, &CorruptError{Path: r.path, Err: fmt.Errorf("entry %q does not carry its own name", name)}
		}
	}
	return &f, nil
}

func (r *Registry) write(f *file) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("failed to update the registry: %w", err)
	}
	return nil
}

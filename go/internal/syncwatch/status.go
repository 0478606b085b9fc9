// Package syncwatch runs syncs for a sandbox on the host: one at a time under a
// lock (RunOnce, used by `sync` and `stop --sync`), and continuously for the
// auto-commit and auto-idle sync modes (Watch, run by the detached
// `keystone agent watch <name>`). It records the outcome of every sync in
// state/sync.json so that `status` can show it.
//
// It never lets the guest reach the host: it polls the workspace's files, which
// live on the host. A kill at any moment leaves consistent refs (gitsync's order:
// objects, then all remote-tracking refs in one transaction, then the
// fast-forward) and a complete sync.json (temp file + rename).
package syncwatch

import (
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Status is the content of state/sync.json.
type Status struct {
	Mode           string    `json:"mode,omitempty"` // the watcher's sync mode; "" when only manual syncs ran
	LastSync       time.Time `json:"lastSync,omitzero"`
	LastResult     string    `json:"lastResult,omitempty"` // a gitsync Result*, or "error"
	LastError      string    `json:"lastError,omitempty"`
	Branch         string    `json:"branch,omitempty"`
	Head           string    `json:"head,omitempty"` // the sandbox's tip that was synced
	PendingCommits int       `json:"pendingCommits"` // on the sandbox's branch, not yet on the host's
	// PendingError is set by status alone, when the pending commits could
	// not be counted (the workspace is unreadable or refused); the count is
	// then 0 and means nothing.
	PendingError string `json:"pendingError,omitempty"`
	// Paused: the host branch could not be fast-forwarded (diverged, dirty,
	// detached); the sandbox's commits keep arriving in Ref only.
	Paused       bool     `json:"paused"`
	PausedReason string   `json:"pausedReason,omitempty"`
	Ref          string   `json:"ref,omitempty"`
	Commands     []string `json:"commands,omitempty"`
	Review       []string `json:"review,omitempty"` // paths to review that arrived with the last sync
}

// ReadStatus reads state/sync.json; a sandbox that never synced has a zero Status.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	err := atomicfile.ReadJSON(filepath.Join(stateDir, statedir.SyncStatus), "sync status", &st)
	return st, err
}

// writeStatus replaces state/sync.json atomically.
func writeStatus(stateDir string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(stateDir, statedir.SyncStatus), append(b, '\n'), 0o600)
}

package gitsync

// Report is what a sync did, or with DryRun would do. `sync --json` prints it;
// keys only ever get added.
type Report struct {
	Sandbox string `json:"sandbox"`
	DryRun  bool   `json:"dryRun"`
	Result  string `json:"result"` // one of the Result* constants

	Branch string `json:"branch"`         // the host's current branch; "" when HEAD is detached
	Ref    string `json:"ref,omitempty"`  // remote-tracking ref of the sandbox's branch of that name
	From   string `json:"from,omitempty"` // host branch before
	To     string `json:"to,omitempty"`   // sandbox branch

	Commits      []Commit     `json:"commits"` // on the sandbox's branch, not on the host's; newest first
	FilesChanged int          `json:"filesChanged"`
	Insertions   int          `json:"insertions"`
	Deletions    int          `json:"deletions"`
	Review       []ReviewPath `json:"review"` // incoming paths that run code on the host or in CI

	Uncommitted      []Uncommitted `json:"uncommitted"` // in the sandbox: listed, not transferred
	UncommittedError string        `json:"uncommittedError,omitempty"`

	Refs   []RefUpdate       `json:"refs"`             // remote-tracking refs moved (or to move)
	Manual *ManualMergeError `json:"manual,omitempty"` // Result "manual": why and what to run

	// Warnings are what failed after the sync itself succeeded (the status
	// file could not be written): the result stands, the user should know.
	Warnings []string `json:"warnings,omitempty"`
}

// Uncommitted is a file the sandbox changed without committing; Status is the
// two-letter code of `git status --short`.
type Uncommitted struct {
	Path   string `json:"path"`
	Status string `json:"status"`
}

// RefUpdate is one remote-tracking ref.
type RefUpdate struct {
	Branch  string `json:"branch"`
	Ref     string `json:"ref"`
	Old     string `json:"old,omitempty"`
	New     string `json:"new,omitempty"`
	Commits int    `json:"commits"` // commits the host did not have
	Forced  bool   `json:"forced"`  // the sandbox rewrote the branch; the old value stays in the ref's reflog
	// Deleted: the sandbox deleted the branch, so its ref was pruned (like
	// `git fetch --prune`); Old is where it pointed, New is empty.
	Deleted bool `json:"deleted,omitempty"`
}

// Package gitsync moves committed git history between the host project and a
// sandbox's workspace: Clone fills a new workspace from the host repository,
// Sync brings the workspace's branches back into refs/remotes/keystone/<name>/
// and fast-forwards the host's branch when nothing can be lost.
//
// The workspace is written by the agent and is read as hostile: only in-process,
// through go-git's storage on an os.Root, never with a git binary, hook, config,
// attribute or filter of its own; every object is hashed again and every tree
// entry checked before anything reaches the host. The host's own git (TrustedGit)
// runs only in the host repository. docs/sync.md has the whole contract.
package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// RefPrefix is where the sandbox's branches land in the host repository:
// refs/remotes/keystone/<sandbox>/<branch>, readable with plain git
// (`git log keystone/<sandbox>/main`).
const RefPrefix = "refs/remotes/keystone/"

// Options says what to sync.
type Options struct {
	Name      string // sandbox name
	HostRepo  string // the user's project: a git working tree
	Workspace string // the sandbox's clone, read in-process only
	Git       string // the trusted git binary for the host repository; "" means TrustedGit()

	DryRun          bool // change nothing at all, not even refs or objects
	SkipUncommitted bool // do not list the sandbox's uncommitted files (the watcher)
}

// Results of a sync (Report.Result).
const (
	ResultFastForwarded = "fast-forwarded" // the host branch moved to the sandbox's
	ResultFetched       = "fetched"        // new commits are in the remote-tracking refs only
	ResultUpToDate      = "up-to-date"     // nothing new: ErrNoChanges
	ResultManual        = "manual"         // see Report.Manual: ErrManualMerge
)

// Sync fetches every branch of the workspace into the host's remote-tracking refs
// and fast-forwards the host's current branch to the sandbox's branch of the same
// name when that is a fast-forward that overwrites nothing. It returns the report
// together with ErrNoChanges or a *ManualMergeError when those apply.
//
// Order, so that a kill at any point leaves consistent state: validate every
// incoming object, install them as one pack (rename), move all remote-tracking refs
// in one `git update-ref` transaction, then `git merge --ff-only` in the host.
func Sync(ctx context.Context, o Options) (*Report, error) {
	trace("start")
	defer trace("end")
	s, err := prepare(ctx, o)
	trace("prepared")
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return nil, err
	}
	rep := s.rep
	if len(rep.Commits) > 0 && rep.Branch != "" {
		// The host's status does not depend on the incoming objects: ask for it
		// while they are checked and written.
		s.dirty = make(chan dirtyResult, 1)
		go func() {
			paths, err := s.dirtyPaths(ctx)
			s.dirty <- dirtyResult{paths, err}
		}()
	}
	if o.DryRun {
		if err := s.tr.verifyBlobs(ctx); err != nil {
			return nil, err
		}
	} else {
		if _, err := s.tr.writePack(ctx, filepath.Join(s.dirs.common, "objects")); err != nil {
			return nil, fmt.Errorf("cannot store the sandbox's objects in %q: %w", o.HostRepo, err)
		}
		trace("packed")
		if err := s.updateRefs(ctx); err != nil {
			return nil, err
		}
	}
	if rep.Insertions, rep.Deletions, err = lineStats(ctx, s.u, s.tr.stats, s.changes); err != nil {
		return nil, fmt.Errorf("cannot count the changed lines: %w", err)
	}
	if len(rep.Commits) == 0 {
		if s.tr.count() == 0 && newCommits(rep.Refs) == 0 {
			rep.Result = ResultUpToDate
			return rep, ErrNoChanges
		}
		rep.Result = ResultFetched
		return rep, nil
	}
	if merr := s.checkFastForward(ctx); merr != nil {
		rep.Result, rep.Manual = ResultManual, merr
		return rep, merr
	}
	if !o.DryRun {
		if _, err := s.git.run(context.WithoutCancel(ctx), nil, "merge", "--ff-only", "--quiet", rep.Ref); err != nil {
			merr := &ManualMergeError{Kind: KindMergeFailed, Branch: rep.Branch, Ref: rep.Ref,
				Detail: err.Error(), Commands: []string{"git merge --ff-only " + rep.Ref}}
			rep.Result, rep.Manual = ResultManual, merr
			return rep, merr
		}
	}
	rep.Result = ResultFastForwarded
	return rep, nil
}

// syncer is one sync's state between its phases.
type syncer struct {
	o       Options
	git     hostGit
	dirs    hostDirs
	host    *filesystem.Storage
	ws      *filesystem.Storage
	u       *union
	tr      *transfer
	rep     *Report
	dirty   chan dirtyResult // the host's git status, asked for early
	paths   []string         // paths changed on the current branch
	changes object.Changes   // the same changes, counted into lines once blobs were read
	head    plumbing.Hash
}

func (s *syncer) close() {
	if s.host != nil {
		s.host.Close()
	}
	if s.ws != nil {
		closeWorkspace(s.ws)
	}
}

// closeWorkspace closes a storage from openWorkspace and its os.Root.
func closeWorkspace(st *filesystem.Storage) {
	st.Close()
	if r, ok := st.Filesystem().(*rootFS); ok {
		r.Close()
	}
}

// prepare reads and checks everything and fills the report; it changes nothing.
func prepare(ctx context.Context, o Options) (*syncer, error) {
	if o.Git == "" {
		var err error
		if o.Git, err = TrustedGit(); err != nil {
			return nil, err
		}
	}
	s := &syncer{o: o, git: hostGit{bin: o.Git, dir: o.HostRepo}}
	var err error
	if s.dirs, err = s.git.dirs(ctx); err != nil {
		return s, err
	}
	ws, _, err := openWorkspace(o.Workspace)
	if err != nil {
		return s, err
	}
	s.ws = ws
	// The sandbox's uncommitted files are listed meanwhile, through a storage of
	// their own: go-git's is not safe for concurrent use.
	type listing struct {
		files []Uncommitted
		err   error
	}
	listed := make(chan listing, 1)
	if !o.SkipUncommitted {
		go func() {
			st, _, err := openWorkspace(o.Workspace)
			if err != nil {
				listed <- listing{[]Uncommitted{}, err}
				return
			}
			defer closeWorkspace(st)
			files, err := uncommitted(st, o.Workspace)
			listed <- listing{files, err}
		}()
	}
	branches, wsHead, err := workspaceBranches(ws)
	if err != nil {
		return s, err
	}
	s.host = openStorage(s.dirs.common)
	if _, err := os.Stat(filepath.Join(s.dirs.common, "shallow")); err == nil {
		return s, fmt.Errorf("%q is a shallow clone: sync needs its whole history (`git fetch --unshallow`)", o.HostRepo)
	}
	have, err := newObjectSet(filepath.Join(s.dirs.common, "objects"))
	if err != nil {
		return s, fmt.Errorf("cannot read the objects of %q: %w", o.HostRepo, err)
	}
	s.tr = newTransfer(ws, have.has, true)
	var tips []want
	for _, b := range branches {
		tips = append(tips, want{hash: b.hash, typ: plumbing.CommitObject})
	}
	if err := s.tr.walk(ctx, tips); err != nil {
		return s, err
	}
	trace("walked")
	s.u = &union{EncodedObjectStorer: s.host, ws: ws, incoming: s.tr}
	s.rep = &Report{Sandbox: o.Name, DryRun: o.DryRun, Commits: []Commit{}, Review: []ReviewPath{},
		Uncommitted: []Uncommitted{}, Refs: []RefUpdate{}}
	if err := s.current(ctx, branches, wsHead); err != nil {
		return s, err
	}
	trace("current")
	if err := s.refUpdates(ctx, branches); err != nil {
		return s, err
	}
	trace("refs")
	if !o.SkipUncommitted {
		l := <-listed
		s.rep.Uncommitted = l.files
		if l.err != nil {
			s.rep.UncommittedError = l.err.Error()
		}
	}
	return s, nil
}

var traceStart = time.Now()

// trace prints a sync's phases to stderr when KEYSTONE_SYNC_TRACE is set.
func trace(what string) {
	if os.Getenv("KEYSTONE_SYNC_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "trace: %s at %v\n", what, time.Since(traceStart))
	}
}

// current finds the host's branch, its counterpart in the sandbox and the commits
// and changes a fast-forward would bring.
func (s *syncer) current(ctx context.Context, branches []branch, wsHead string) error {
	headFile, err := os.ReadFile(filepath.Join(s.dirs.gitDir, "HEAD"))
	if err != nil {
		return fmt.Errorf("cannot read the HEAD of %q: %w", s.o.HostRepo, err)
	}
	head := strings.TrimSpace(string(headFile))
	want := wsHead
	if target, ok := strings.CutPrefix(head, "ref: refs/heads/"); ok {
		s.rep.Branch, want = target, target
		if r, err := s.host.Reference(plumbing.NewBranchReferenceName(target)); err == nil {
			s.head = r.Hash()
		}
	} else {
		s.head = plumbing.NewHash(head)
	}
	var tip plumbing.Hash
	for _, b := range branches {
		if b.name == want {
			tip = b.hash
		}
	}
	if tip.IsZero() {
		return nil
	}
	s.rep.Ref = RefPrefix + s.o.Name + "/" + want
	s.rep.From, s.rep.To = s.head.String(), tip.String()
	if s.head.IsZero() {
		s.rep.From = ""
	}
	commits, err := rangeCommits(ctx, s.u, s.head, tip)
	if err != nil {
		return fmt.Errorf("cannot compare %q with the sandbox: %w", s.o.HostRepo, err)
	}
	for _, c := range commits {
		s.rep.Commits = append(s.rep.Commits, Commit{Hash: c.Hash.String()[:7], Subject: subject(c)})
	}
	if len(commits) == 0 {
		return nil
	}
	d, err := summarize(ctx, s.u, s.head, tip, want)
	if err != nil {
		return fmt.Errorf("cannot compute the changes: %w", err)
	}
	s.paths, s.changes = d.paths, d.changes
	s.rep.FilesChanged = d.files
	s.rep.Review = append(s.rep.Review, d.review...)
	return nil
}

func subject(c *object.Commit) string {
	line, _, _ := strings.Cut(c.Message, "\n")
	return line
}

// refUpdates works out how each remote-tracking ref moves.
func (s *syncer) refUpdates(ctx context.Context, branches []branch) error {
	for _, b := range branches {
		ref := RefPrefix + s.o.Name + "/" + b.name
		var old plumbing.Hash
		if r, err := s.host.Reference(plumbing.ReferenceName(ref)); err == nil {
			old = r.Hash()
		}
		if old == b.hash {
			continue
		}
		u := RefUpdate{Branch: b.name, Ref: ref, New: b.hash.String()}
		base := s.head
		if !old.IsZero() {
			u.Old, base = old.String(), old
			ok, err := s.isAncestor(ctx, old, b.hash)
			if err != nil {
				return err
			}
			u.Forced = !ok
		}
		news, err := rangeCommits(ctx, s.u, base, b.hash)
		if err != nil {
			return err
		}
		for _, c := range news {
			if s.tr.has(c.Hash) {
				u.Commits++
			}
		}
		if ref != s.rep.Ref && u.Commits > 0 {
			d, err := summarize(ctx, s.u, base, b.hash, b.name)
			if err != nil {
				return err
			}
			s.rep.Review = append(s.rep.Review, d.review...)
		}
		s.rep.Refs = append(s.rep.Refs, u)
	}
	return nil
}

func newCommits(refs []RefUpdate) int {
	n := 0
	for _, r := range refs {
		n += r.Commits
	}
	return n
}

// updateRefs moves every remote-tracking ref in one transaction of the host's git,
// with a reflog entry, so a rewritten sandbox branch leaves its old value findable.
func (s *syncer) updateRefs(ctx context.Context) error {
	if len(s.rep.Refs) == 0 {
		return nil
	}
	var in strings.Builder
	in.WriteString("start\n")
	for _, r := range s.rep.Refs {
		old := r.Old
		if old == "" {
			old = plumbing.ZeroHash.String()
		}
		fmt.Fprintf(&in, "update %s %s %s\n", r.Ref, r.New, old)
	}
	in.WriteString("prepare\ncommit\n")
	// Not cancelled with ctx: a git killed inside its transaction leaves lock files.
	_, err := s.git.run(context.WithoutCancel(ctx), []byte(in.String()), "update-ref", "--create-reflog",
		"-m", "keystone agent sync "+s.o.Name, "--stdin")
	if err != nil {
		return fmt.Errorf("cannot update the remote-tracking refs of %q: %w", s.o.Name, err)
	}
	return nil
}

// checkFastForward returns why the host branch cannot simply move, or nil.
func (s *syncer) checkFastForward(ctx context.Context) *ManualMergeError {
	r := s.rep
	if r.Branch == "" {
		return &ManualMergeError{Kind: KindDetached, Ref: r.Ref, Commands: []string{
			"git switch <branch>", "git merge --ff-only " + r.Ref}}
	}
	tip := plumbing.NewHash(r.To)
	ok, err := s.isAncestor(ctx, s.head, tip)
	if err != nil || !ok {
		return &ManualMergeError{Kind: KindDiverged, Branch: r.Branch, Ref: r.Ref, Commands: []string{
			"git merge " + r.Ref, "git rebase " + r.Ref}}
	}
	res := <-s.dirty
	dirty, err := res.paths, res.err
	if err != nil {
		return &ManualMergeError{Kind: KindMergeFailed, Branch: r.Branch, Ref: r.Ref,
			Detail: err.Error(), Commands: []string{"git merge --ff-only " + r.Ref}}
	}
	if in := overlap(s.paths, dirty); len(in) > 0 {
		return &ManualMergeError{Kind: KindDirty, Branch: r.Branch, Ref: r.Ref, Files: in, Commands: []string{
			"git stash push --include-untracked", "git merge --ff-only " + r.Ref, "git stash pop"}}
	}
	return nil
}

type dirtyResult struct {
	paths []string
	err   error
}

// dirtyPaths lists modified, staged, untracked and ignored paths of the host's
// working tree (ignored ones too: git would overwrite them silently).
func (s *syncer) dirtyPaths(ctx context.Context) ([]string, error) {
	out, err := s.git.run(ctx, nil, "status", "--porcelain=v1", "-z", "--no-renames",
		"--untracked-files=normal", "--ignored=traditional")
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range strings.Split(string(out), "\x00") {
		if len(e) > 3 {
			paths = append(paths, strings.TrimSuffix(e[3:], "/"))
		}
	}
	return paths, nil
}

// overlap returns the dirty paths that an incoming path equals, lies inside or contains.
func overlap(incoming, dirty []string) []string {
	set := map[string]bool{}
	for _, p := range incoming {
		for q := p; q != "."; q = filepath.Dir(q) {
			set[q] = true
		}
	}
	exact := map[string]bool{}
	for _, p := range incoming {
		exact[p] = true
	}
	var out []string
	for _, d := range dirty {
		hit := set[d]
		for q := filepath.Dir(d); !hit && q != "."; q = filepath.Dir(q) {
			hit = exact[q]
		}
		if hit {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// uncommitted lists what the sandbox has not committed, read in-process.
func uncommitted(ws *filesystem.Storage, workspace string) ([]Uncommitted, error) {
	r, err := git.Open(ws, osfs.New(workspace, osfs.WithBoundOS()))
	if err != nil {
		return []Uncommitted{}, err
	}
	wt, err := r.Worktree()
	if err != nil {
		return []Uncommitted{}, err
	}
	st, err := wt.Status()
	if err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return []Uncommitted{}, err
	}
	out := []Uncommitted{}
	for p, fs := range st {
		if fs.Staging == git.Unmodified && fs.Worktree == git.Unmodified {
			continue
		}
		out = append(out, Uncommitted{Path: p, Status: string([]byte{byte(fs.Staging), byte(fs.Worktree)})})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// isAncestor reports whether the host-known commit a is reachable from b, exactly
// (a date-ordered walk can be fooled by skewed clocks, which a hostile sandbox
// can set at will). It walks b's history through the commits arriving with this
// sync; the host-known commits where that walk stops are handed to the host's
// git, which answers from its own repository (and commit-graph) alone.
func (s *syncer) isAncestor(ctx context.Context, a, b plumbing.Hash) (bool, error) {
	if a.IsZero() || a == b {
		return true, nil
	}
	if b.IsZero() {
		return false, nil
	}
	args := []string{"rev-list", "--count", a.String(), "--not"}
	seen := map[plumbing.Hash]bool{}
	for stack := []plumbing.Hash{b}; len(stack) > 0; {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if h == a {
			return true, nil
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		if !s.tr.has(h) {
			args = append(args, h.String())
			continue
		}
		c, err := object.GetCommit(s.u, h)
		if err != nil {
			return false, err
		}
		stack = append(stack, c.ParentHashes...)
	}
	if len(args) == 4 {
		return false, nil
	}
	out, err := s.git.run(ctx, nil, args...)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(out)) == "0", nil
}

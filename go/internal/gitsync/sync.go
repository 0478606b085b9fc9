// Package gitsync moves committed git history between the host project and a
// sandbox's workspace: Clone fills a new workspace from the host repository,
// Sync brings the workspace's branches back into refs/remotes/keystone/<name>/
// and fast-forwards the host's branch when nothing can be lost.
//
// The workspace is written by the agent and is read as hostile, in-process,
// only through package sandboxgit (confined, bounded, checked; never a git
// binary, hook, config, attribute or filter of its own). What travels is
// written by package packwrite and verified by the host's own `git index-pack
// --strict` before any ref can point at it (install.go). The host's git
// (TrustedGit) runs only in the host repository. docs/sync.md has the contract.
package gitsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// RefPrefix is where the sandbox's branches land in the host repository:
// refs/remotes/keystone/<sandbox>/<branch>, readable with plain git
// (`git log keystone/<sandbox>/main`).
const RefPrefix = "refs/remotes/keystone/"

// ErrHostile wraps every refusal caused by content of the workspace that no
// honest git would produce (crafted tree entries, corrupt objects, bad ref
// names) or that is over a limit (*sandboxgit.LimitError).
var ErrHostile = sandboxgit.ErrHostile

func hostile(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrHostile}, args...)...)
}

// recoverInto, deferred on a sync's worker goroutine (Sync's own recover
// cannot reach it), turns a panic into *err, as Sync does.
func recoverInto(err *error) {
	if p := recover(); p != nil {
		*err = internalError(p)
	}
}

// internalError is the error a recovered panic p becomes.
func internalError(p any) error {
	return fmt.Errorf("%w: sync stopped on an internal error: %v", ErrHostile, p)
}

// Options says what to sync.
type Options struct {
	Name      string // sandbox name
	HostRepo  string // the user's project: a git working tree
	Workspace string // the sandbox's clone, read in-process only
	Git       string // the trusted git binary for the host repository; "" means TrustedGit()

	DryRun          bool // change nothing in the host repository
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
// Order, so that a kill at any point leaves consistent state: check every
// incoming commit, tree and tag; have the host's index-pack verify the pack and
// install it (rename); prune the refs of deleted branches, then move all
// remote-tracking refs in one `git update-ref` transaction; then `git merge
// --ff-only` in the host.
func Sync(ctx context.Context, o Options) (rep *Report, err error) {
	defer func() {
		// Nothing here should panic; if a parser does anyway, the caller (the
		// watcher, above all) gets an error and carries on. Worker goroutines
		// recover on their own (recoverInto: the walk's, the line count's).
		if p := recover(); p != nil {
			rep, err = nil, internalError(p)
		}
	}()
	trace("start")
	s, err := prepare(ctx, o)
	if s != nil {
		defer s.close()
		defer func() { // the sandbox's uncommitted files, listed meanwhile
			if s.listed == nil {
				return
			}
			if l, ok := <-s.listed; ok && rep != nil {
				rep.Uncommitted = l.files
				if l.err != nil {
					rep.UncommittedError = l.err.Error()
				}
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	trace("prepared")
	rep = s.rep
	if len(rep.Commits) > 0 && rep.Branch != "" {
		// The host's status does not depend on the incoming objects: ask for it
		// while they are written and verified.
		s.dirty = make(chan dirtyResult, 1)
		go func() {
			paths, err := s.dirtyPaths(ctx)
			s.dirty <- dirtyResult{paths, err}
		}()
	}
	if err := s.storeObjects(ctx); err != nil {
		return nil, fmt.Errorf("cannot store the sandbox's objects in %q: %w", o.HostRepo, err)
	}
	trace("stored")
	// The objects are verified and where the host's git finds them: it counts
	// the changed lines while the refs move and the branch fast-forwards.
	if len(rep.Commits) > 0 {
		counted := make(chan lineCount, 1)
		go func() {
			var c lineCount
			defer func() { counted <- c }()
			defer recoverInto(&c.err)
			c.ins, c.del, c.err = s.countLines(ctx, s.alternates)
		}()
		defer func() {
			c := <-counted
			switch {
			case rep == nil:
			case c.err != nil: // the sync itself stands
				rep.Warnings = append(rep.Warnings, "cannot count the changed lines: "+c.err.Error())
			default:
				rep.Insertions, rep.Deletions = c.ins, c.del
			}
		}()
	}
	if !o.DryRun {
		if err := s.updateRefs(ctx); err != nil {
			return nil, err
		}
	}
	if len(rep.Commits) == 0 {
		if s.tr.count(allObjects) == 0 && newCommits(rep.Refs) == 0 {
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
			detail := err.Error()
			if checkoutCutShort(detail) {
				detail += " (the files it wrote were put back as they were)"
				if uerr := s.undoFailedMerge(context.WithoutCancel(ctx)); uerr != nil {
					detail = fmt.Sprintf("%v (putting back the files it wrote failed too: %v)", err, uerr)
				}
			}
			merr := &ManualMergeError{Kind: KindMergeFailed, Branch: rep.Branch, Ref: rep.Ref,
				Detail: detail, Commands: []string{"git merge --ff-only " + rep.Ref}}
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
	have    *objectSet
	ws      *sandboxgit.Repo
	u       *union
	tr      *transfer
	rep     *Report
	dirty   chan dirtyResult // the host's git status, asked for early
	listed  chan listing     // the sandbox's uncommitted files
	paths   []string         // paths changed on the current branch
	changes object.Changes   // the same changes, for undoFailedMerge
	head    plumbing.Hash

	// A dry run's verified objects, kept out of the host repository until
	// the lines are counted: alternates names their object directories, as
	// GIT_ALTERNATE_OBJECT_DIRECTORIES.
	verified   []*incoming
	alternates string
}

// lineCount is what countLines returns.
type lineCount struct {
	ins, del int
	err      error
}

func (s *syncer) close() {
	for _, in := range s.verified {
		in.remove()
	}
	if s.host != nil {
		s.host.Close()
	}
	if s.ws != nil {
		s.ws.Close()
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
	if s.ws, err = sandboxgit.Open(o.Workspace); err != nil {
		return s, err
	}
	// The sandbox's uncommitted files are listed while the sync goes on.
	s.listed = make(chan listing, 1)
	if o.SkipUncommitted {
		close(s.listed)
	} else {
		go func() { s.listed <- listUncommitted(o.Workspace) }()
	}
	branches, err := s.ws.Branches()
	if err != nil {
		return s, err
	}
	s.host = openStorage(s.dirs.common)
	if _, err := os.Stat(filepath.Join(s.dirs.common, "shallow")); err == nil {
		return s, fmt.Errorf("%q is a shallow clone: sync needs its whole history (`git fetch --unshallow`)", o.HostRepo)
	}
	if s.have, err = newObjectSet(filepath.Join(s.dirs.common, "objects")); err != nil {
		return s, fmt.Errorf("cannot read the objects of %q: %w", o.HostRepo, err)
	}
	s.tr = newTransfer(s.ws, s.have.has)
	var tips []want
	for _, b := range branches {
		tips = append(tips, want{hash: b.Hash, typ: plumbing.CommitObject})
	}
	if err := s.tr.walk(ctx, tips); err != nil {
		return s, err
	}
	trace(fmt.Sprintf("walked (%d commits, trees and tags: %d bytes; %d blobs)", len(s.tr.small), s.tr.metaBytes, len(s.tr.blobs)))
	s.u = &union{EncodedObjectStorer: s.host, incoming: s.tr}
	s.rep = &Report{Sandbox: o.Name, DryRun: o.DryRun, Commits: []Commit{}, Review: []ReviewPath{},
		Uncommitted: []Uncommitted{}, Refs: []RefUpdate{}}
	if err := s.current(ctx, branches, s.ws.HeadBranch()); err != nil {
		return s, err
	}
	if err := s.refUpdates(ctx, branches); err != nil {
		return s, err
	}
	trace("refs")
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
func (s *syncer) current(ctx context.Context, branches []sandboxgit.Branch, wsHead string) error {
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
		if b.Name == want {
			tip = b.Hash
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
	commits, _, err := s.rangeCommits(ctx, s.head, tip)
	if err != nil {
		return fmt.Errorf("cannot compare %q with the sandbox: %w", s.o.HostRepo, err)
	}
	s.rep.Commits = append(s.rep.Commits, commits...)
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

package syncwatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/untrusted"
)

// Sync modes (the guide's "Sync Modes"); the auto modes run a watcher.
const (
	ModeManual     = "manual"      // only `keystone agent sync` syncs: no watcher
	ModeAutoCommit = "auto-commit" // sync each new sandbox commit as it appears
	ModeAutoIdle   = "auto-idle"   // sync once the workspace has been quiet for Idle
)

// Modes are the guide's sync modes, the default first.
var Modes = []string{ModeManual, ModeAutoCommit, ModeAutoIdle}

// Watched tells whether a sandbox of sync mode mode runs a watcher.
func Watched(mode string) bool { return mode == ModeAutoCommit || mode == ModeAutoIdle }

// Defaults of Options.
const (
	DefaultIdle     = 30 * time.Second
	DefaultInterval = time.Second
)

// Options configure a watcher.
type Options struct {
	Sync     gitsync.Options
	StateDir string
	Mode     string
	Idle     time.Duration // auto-idle: quiet time before a sync; also the retry period while paused
	Interval time.Duration // how often the workspace is looked at
	// Alive reports whether the sandbox still runs; when it stops, the watcher
	// syncs what is left and returns. Nil means until ctx is done.
	Alive func() bool
	// Clock is the watcher's time; nil is the real one. Tests drive their
	// own, so that "quiet for Idle" never depends on how loaded the machine is.
	Clock Clock
}

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// After sends on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Event is one sync the watcher ran.
type Event struct {
	Time   time.Time
	Report *gitsync.Report
	Err    error
}

// Watch syncs the sandbox whenever its branches change (auto-commit) or once the
// workspace has been quiet for Idle after they changed (auto-idle), until ctx is
// done or Alive says the sandbox stopped. When the host branch cannot be
// fast-forwarded the sandbox's commits still arrive in the remote-tracking refs,
// the status says the fast-forward is paused, and it is retried every Idle: it
// resumes by itself once the user has merged or cleaned up.
func Watch(ctx context.Context, o Options, onEvent func(Event)) error {
	if !Watched(o.Mode) {
		return fmt.Errorf("unknown sync mode %q (choose auto-commit or auto-idle)", o.Mode)
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	o.Sync.SkipUncommitted = true
	w := &watcher{o: o, onEvent: onEvent}
	return w.loop(ctx)
}

type watcher struct {
	o       Options
	onEvent func(Event)

	synced       string    // branches fingerprint at the last sync
	activity     string    // workspace fingerprint at the last look (auto-idle)
	lastActivity time.Time // when it last changed
	retry        bool      // the last sync needs another try: paused fast-forward or a passing error
	lastTry      time.Time
	wait         time.Duration // until the next look: Interval, longer for a large workspace
}

func (w *watcher) loop(ctx context.Context) error {
	w.lastActivity, w.wait = w.o.Clock.Now(), w.o.Interval
	for {
		stopping := w.o.Alive != nil && !w.o.Alive()
		w.step(ctx, stopping)
		if stopping {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.o.Clock.After(w.wait):
		}
	}
}

// step looks at the workspace once and syncs when it is time.
func (w *watcher) step(ctx context.Context, final bool) {
	now := w.o.Clock.Now()
	refs, entries := branchesFingerprint(w.o.Sync.Workspace)
	if w.o.Mode == ModeAutoIdle {
		a, n := activityFingerprint(w.o.Sync.Workspace)
		if a = refs + a; a != w.activity {
			w.activity, w.lastActivity = a, now
		}
		entries += n
	}
	w.wait = w.o.Interval * time.Duration(1+entries/entriesPerLook)
	due := refs != w.synced || (w.retry && now.Sub(w.lastTry) >= w.o.Idle)
	quiet := w.o.Mode == ModeAutoCommit || final || now.Sub(w.lastActivity) >= w.o.Idle
	if !due || !quiet {
		return
	}
	w.synced, w.lastTry = refs, now
	rep, err := runOnce(ctx, w.o.StateDir, w.o.Mode, w.o.Sync)
	if errors.Is(err, gitsync.ErrNoChanges) {
		err = nil
	}
	// A hostile workspace is refused until its branches change; anything else
	// (a paused fast-forward, a busy lock, a vanished host repository) is retried.
	w.retry = err != nil && !errors.Is(err, gitsync.ErrHostile)
	if w.onEvent != nil {
		w.onEvent(Event{Time: now, Report: rep, Err: err})
	}
}

// entriesPerLook is how many entries (working-tree entries, branch files)
// one look may stat per interval: 100,000 took about 0.28 s here. A larger
// workspace is looked at less often, in proportion, so that a tree of
// millions of files (a hostile agent can make them) costs the host daemon a
// bounded share of a core; the watcher then notices changes that much later.
const entriesPerLook = 100_000

// branchesFingerprint changes whenever a branch or HEAD of the workspace moves;
// it also says how many branch files it read. It reads only regular files of
// bounded size: the workspace is hostile.
func branchesFingerprint(workspace string) (string, int) {
	h := sha256.New()
	n := 0
	gitDir := filepath.Join(workspace, ".git")
	add := func(p string) {
		f, err := untrusted.OpenPath(p)
		if err != nil {
			return
		}
		defer f.Close()
		fi, err := f.Stat() // the file opened: a FIFO put there meanwhile is not read
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, fi.Size())
		io.Copy(h, io.LimitReader(f, 64<<20))
	}
	add(filepath.Join(gitDir, "HEAD"))
	add(filepath.Join(gitDir, "packed-refs"))
	filepath.WalkDir(filepath.Join(gitDir, "refs", "heads"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			add(p)
			n++
		}
		return nil
	})
	return string(h.Sum(nil)), n
}

// skipActivity are directories whose churn does not count as work: build
// output and dependency caches.
var skipActivity = map[string]bool{".git": true, "node_modules": true, "target": true, "dist": true,
	"build": true, ".next": true, "out": true, ".direnv": true}

// activityFingerprint changes whenever a file of the working tree or the index
// is added, removed or written; it also says how many entries it looked at.
func activityFingerprint(workspace string) (string, int) {
	h := sha256.New()
	n := 0
	if fi, err := os.Lstat(filepath.Join(workspace, ".git", "index")); err == nil {
		fmt.Fprintf(h, "index %d %d\n", fi.Size(), fi.ModTime().UnixNano())
	}
	filepath.WalkDir(workspace, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != workspace && skipActivity[d.Name()] {
			return fs.SkipDir
		}
		n++
		if fi, err := d.Info(); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		}
		return nil
	})
	return string(h.Sum(nil)), n
}

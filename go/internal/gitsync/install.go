package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/sys/unix"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// Every pack keystone writes into a repository (the host's at sync, a new
// workspace's at clone) goes through incoming: it is streamed into the host's
// own `git index-pack --stdin --strict`, which runs nothing of the sandbox's and
// checks every object as git's fetch does with transfer.fsckObjects (inflates and
// hashes it, resolves its delta, runs fsck's checks on it, and checks that
// every object it names exists with the right type), and writes the pack and its
// index into a temporary directory of keystone's own. Only a pack that passed,
// holding every object the sync needs, moves into objects/pack; no ref can point
// at anything before. On failure the directory is removed: nothing is left.
//
// The directory, objects/keystone-incoming-*, is invisible to git (it reads
// objects/pack/*.idx and the two-hex-digit directories only) and is locked
// (flock) while in use: a sync killed with -9 leaves it unlocked, and the next
// sync into that repository removes it.

const incomingPrefix = "keystone-incoming-"

// staleAfter is how old an incoming directory without a lock file must be to
// be removed: one is created and locked in the same instant.
const staleAfter = 10 * time.Minute

type incoming struct {
	dir    string
	sum    plumbing.Hash // the verified pack's name, once published
	lock   *os.File
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// startIncoming creates the temporary directory in parent and starts the host's
// index-pack reading a pack from src, or when src is nil from in.stdin; thin
// lets the pack's deltas name bases that only the host has (git appends them);
// threads, unless 0, is how many threads index-pack rebuilds deltas on; env is
// added to index-pack's environment.
func startIncoming(ctx context.Context, g hostGit, parent string, thin bool, src *os.File, threads int, env []string) (*incoming, error) {
	removeStale(parent)
	dir, err := os.MkdirTemp(parent, incomingPrefix)
	if err != nil {
		return nil, err
	}
	in := &incoming{dir: dir}
	// The lock file is locked before it has its name: another sync's
	// removeStale, which takes a lock it can get for a killed sync's, must
	// never get this one in between (it removed the directory under us).
	unnamed := filepath.Join(dir, "lock.new")
	if in.lock, err = os.OpenFile(unnamed, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600); err == nil {
		if err = unix.Flock(int(in.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			err = os.Rename(unnamed, filepath.Join(dir, "lock"))
		}
	}
	if err != nil {
		in.remove()
		return nil, fmt.Errorf("cannot lock %q: %w", dir, err)
	}
	args := []string{"index-pack", "--stdin", "--strict"}
	if thin {
		args = append(args, "--fix-thin")
	}
	if threads > 0 {
		args = append(args, "--threads="+strconv.Itoa(threads))
	}
	in.cmd = g.command(ctx, append(args, filepath.Join(dir, "incoming.pack"))...)
	in.cmd.Env = append(in.cmd.Env, env...)
	// index-pack holds the lock too (an inherited descriptor shares the
	// flock): a sync killed while index-pack still runs leaves a directory
	// that another sync's removeStale must not remove under it.
	in.cmd.ExtraFiles = []*os.File{in.lock}
	in.cmd.Stdout, in.cmd.Stderr = &in.stdout, &in.stderr
	if src != nil {
		in.cmd.Stdin, in.stdin = src, nopWriteCloser{}
	} else {
		in.stdin, err = in.cmd.StdinPipe()
	}
	if err == nil {
		err = in.cmd.Start()
	}
	if err != nil {
		in.remove()
		return nil, fmt.Errorf("cannot run git index-pack: %w", err)
	}
	return in, nil
}

// finish waits for index-pack and checks that the pack it indexed holds every
// object of want; it returns the pack's name.
func (in *incoming) finish(want []plumbing.Hash) (plumbing.Hash, error) {
	var sum plumbing.Hash
	in.stdin.Close()
	if err := in.cmd.Wait(); err != nil {
		msg := strings.TrimSpace(in.stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		if hostFault(in.cmd.ProcessState, msg) {
			return sum, &HostFaultError{lastLines(msg, 3)}
		}
		return sum, fmt.Errorf("git index-pack refused the pack: %s", lastLines(msg, 3))
	}
	kind, hex, _ := strings.Cut(strings.TrimSpace(in.stdout.String()), "\t")
	if kind != "pack" || len(hex) != 40 {
		return sum, fmt.Errorf("unexpected output of git index-pack: %q", in.stdout.String())
	}
	sum = plumbing.NewHash(hex)
	idx, err := readIndex(filepath.Join(in.dir, "incoming"))
	if err != nil {
		return sum, fmt.Errorf("cannot read the index git index-pack wrote: %w", err)
	}
	for _, h := range want {
		if !idx.Contains(h) {
			return sum, fmt.Errorf("object %s is corrupt: its content does not match its name", h)
		}
	}
	return sum, nil
}

// abort stops index-pack (if running) and removes everything.
func (in *incoming) abort() {
	if in.cmd != nil && in.cmd.Process != nil && in.cmd.ProcessState == nil {
		in.stdin.Close()
		in.cmd.Process.Kill()
		in.cmd.Wait()
	}
	in.remove()
}

// publish moves the verified pack into in's own pack directory as
// pack-<sum>: in.dir is then an object directory that git can be given as an
// alternate, and install moves the pack on from there.
func (in *incoming) publish(sum plumbing.Hash) error {
	if err := os.Mkdir(filepath.Join(in.dir, "pack"), 0o700); err != nil {
		return err
	}
	in.sum = sum
	return movePack(filepath.Join(in.dir, "incoming"), in.published())
}

// published is the published pack's path, without its extension.
func (in *incoming) published() string {
	return filepath.Join(in.dir, "pack", "pack-"+in.sum.String())
}

// install moves the published pack into objectsDir/pack and removes the rest.
func (in *incoming) install(objectsDir string) error {
	defer in.remove()
	return movePack(in.published(), filepath.Join(objectsDir, "pack", "pack-"+in.sum.String()))
}

// movePack moves the pack from (a path without its extension) to: the pack
// and its reverse index first, the index last, since git finds a pack by its
// index. A pack of that name already there is kept.
func movePack(from, to string) error {
	if _, err := os.Stat(to + ".idx"); err == nil {
		return nil
	}
	for _, ext := range []string{".pack", ".rev", ".idx"} {
		err := os.Rename(from+ext, to+ext)
		if err != nil && !(ext == ".rev" && errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("cannot install the sandbox's objects: %w", err)
		}
	}
	return nil
}

func (in *incoming) remove() {
	os.RemoveAll(in.dir)
	if in.lock != nil {
		in.lock.Close() // releases the flock
	}
}

// removeStale removes incoming directories in parent that no sync holds: their
// lock is free (the sync that made them was killed), or they have no lock file
// and are old.
func removeStale(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), incomingPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if err != nil {
			if fi, serr := os.Stat(dir); serr == nil && time.Since(fi.ModTime()) > staleAfter {
				os.RemoveAll(dir)
			}
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(dir)
		}
		f.Close()
	}
}

// readIndex reads base.idx, for base.pack, with the bounded parser.
func readIndex(base string) (*sandboxgit.Index, error) {
	fi, err := os.Stat(base + ".pack")
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(base + ".idx")
	if err != nil {
		return nil, err
	}
	return sandboxgit.ParseIndex(data, fi.Size())
}

// HostFaultError is an index-pack that failed for a reason of the host's own
// (its disk full or read-only, git killed), not for what the pack holds: the
// workspace is not to blame, and the same sync can succeed once the host is
// fixed (the watcher tries again).
type HostFaultError struct{ Reason string }

func (e *HostFaultError) Error() string {
	return "the host's git index-pack could not store the objects: " + e.Reason
}

// hostFaultReasons are the system errors (strerror, as git prints them) that
// come from the host's file system or resources, never from a pack's content.
var hostFaultReasons = []string{"No space left on device", "Disk quota exceeded", "Read-only file system",
	"Input/output error", "Too many open files", "Cannot allocate memory", "Out of memory"}

// hostFault tells whether a git, which ended as st (nil: not known) and said
// msg, failed because of the host: killed by a signal (the OOM killer, a
// user) or stopped on one of hostFaultReasons.
func hostFault(st *os.ProcessState, msg string) bool {
	if st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	for _, r := range hostFaultReasons {
		if strings.Contains(msg, r) {
			return true
		}
	}
	return false
}

type nopWriteCloser struct{}

func (nopWriteCloser) Write(p []byte) (int, error) { return 0, os.ErrClosed }
func (nopWriteCloser) Close() error                { return nil }

// lastLines keeps the last n lines of git's message: the reason comes last.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

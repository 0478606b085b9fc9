package gitsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// The report's inserted and deleted lines are counted by the host's own git,
// once index-pack has verified the incoming objects and they are installed (a
// dry run's stay in their temporary directory, which git reads as an
// alternate object directory): the host's git inflates with C zlib, several
// times faster than Go's, and the count runs beside the checkout.

// countMax is the largest file whose lines are counted; a larger one counts
// as changed with no lines, like a binary file, and is not even read: git's
// diff holds both versions of a file and an index of its lines in memory
// (about 4.5 times the file), which would make a sync's memory grow with the
// largest file.
const countMax = 16 << 20

// emptyTree is git's empty tree, which every git knows without storing it: the
// side to compare with when the host's branch has no commit yet.
const emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// noIndex names, in the host's git directory, an index file that does not
// exist (git reads a missing index as empty, and writes none for diff-tree).
const noIndex = "keystone-no-index"

// countLines returns the lines that the changes from s.rep.From to s.rep.To
// insert and delete, counted as keystone always has: no rename detection (a
// moved file is deleted and added), binary files (a NUL in the first 8000
// bytes, or larger than countMax) and gitlinks count none, a symlink counts
// its target as one line. alternates names an object
// directory holding objects of this sync that are not installed in the host
// repository ("" when they are).
//
// Nothing of the sandbox runs, and none of its attributes applies. git reads
// objects only, all of them verified. diff-tree, plumbing, runs no external
// diff and no textconv filter (--no-ext-diff and --no-textconv say it again).
// git reads .gitattributes from the working tree and from the index, which
// the concurrent fast-forward is filling with the sandbox's: git runs in the
// host's git directory (it reads .gitattributes relative to where it runs,
// even with GIT_DIR set and core.bare, and the sandbox never writes there),
// with an index file that does not exist, and GIT_ATTR_SOURCE (git 2.40 and
// later) names the empty tree, so neither the sandbox's attributes nor the
// host's previous ones can mark a file binary or choose a driver. Only the user's own
// ($GIT_DIR/info/attributes, global, system) apply, as to any git command.
// Nothing is created for it: a sync killed meanwhile leaves nothing behind.
func (s *syncer) countLines(ctx context.Context, alternates string) (ins, del int, err error) {
	from := s.rep.From
	if from == "" {
		from = emptyTree
	}
	cmd := hostGit{bin: s.git.bin, dir: s.dirs.common}.command(ctx,
		"-c", "core.bare=true", "-c", "core.bigFileThreshold="+strconv.Itoa(countMax),
		"diff-tree", "-r", "-z", "--numstat", "--no-renames", "--no-ext-diff", "--no-textconv",
		"--ignore-submodules=all", from, s.rep.To)
	cmd.Env = append(cmd.Env, "GIT_DIR="+s.dirs.common,
		"GIT_INDEX_FILE="+filepath.Join(s.dirs.common, noIndex), "GIT_ATTR_SOURCE="+emptyTree)
	if alternates != "" {
		cmd.Env = append(cmd.Env, "GIT_ALTERNATE_OBJECT_DIRECTORIES="+alternates)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cannot run git diff-tree: %w", err)
	}
	ins, del, perr := parseNumstat(out)
	out.Close() // git, if it is still writing, stops on the closed pipe
	err = cmd.Wait()
	trace("lines counted")
	switch {
	case perr != nil: // git stopped on the closed pipe: the parser's reason is the one
		return 0, 0, perr
	case err != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return 0, 0, fmt.Errorf("git diff-tree: %s", lastLines(msg, 3))
		}
		return 0, 0, fmt.Errorf("git diff-tree: %w", err)
	}
	return ins, del, nil
}

// numstatRecordMax is the longest record of `git diff-tree --numstat -z` that
// parseNumstat reads: two counts of at most 20 digits, two tabs, a path (every
// incoming path is at most sandboxgit.MaxPathLength bytes, checked by the walk)
// and its NUL.
const numstatRecordMax = 2*20 + 2 + sandboxgit.MaxPathLength + 1

var errNumstat = errors.New("unexpected output of git diff-tree --numstat")

// parseNumstat adds up the records "INSERTED\tDELETED\tPATH\x00" that `git
// diff-tree --numstat -z --no-renames` prints; a binary file's counts are "-".
// Its paths are the sandbox's, and only ever skipped.
func parseNumstat(r io.Reader) (ins, del int, err error) {
	br := bufio.NewReaderSize(r, numstatRecordMax)
	for {
		rec, err := br.ReadSlice(0)
		if err == io.EOF && len(rec) == 0 {
			return ins, del, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%w: a record of %d bytes or more without its end", errNumstat, len(rec))
		}
		a, rest, ok1 := bytes.Cut(rec[:len(rec)-1], []byte{'\t'})
		d, path, ok2 := bytes.Cut(rest, []byte{'\t'})
		if !ok1 || !ok2 || len(path) == 0 {
			return 0, 0, fmt.Errorf("%w: %q", errNumstat, rec)
		}
		if ins, err = addCount(ins, a); err == nil {
			del, err = addCount(del, d)
		}
		if err != nil {
			return 0, 0, err
		}
	}
}

// addCount adds a count of numstat (decimal, or "-" for a binary file) to sum.
func addCount(sum int, field []byte) (int, error) {
	if string(field) == "-" {
		return sum, nil
	}
	n, err := strconv.ParseUint(string(field), 10, 63)
	if err != nil || n > uint64(math.MaxInt-sum) {
		return 0, fmt.Errorf("%w: count %q", errNumstat, field)
	}
	return sum + int(n), nil
}

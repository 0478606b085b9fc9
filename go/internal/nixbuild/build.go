package nixbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/keystone-agent/keystone/internal/statedir"
)

// TailLines is how many lines of nix's output a BuildError keeps.
const TailLines = 20

// ErrNixNotFound means the nix program is not on PATH.
var ErrNixNotFound = errors.New("the \"nix\" program was not found in PATH (install Nix with flakes enabled)")

// BuildError is a failed `nix build`: the CLI prints "Failed to build MicroVM"
// and Tail, and exits 3.
type BuildError struct {
	Log  string   // state/build.log: the whole output
	Tail []string // its last TailLines lines
	Err  error    // how nix ended (*exec.ExitError, or the context's error)
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("failed to build MicroVM: nix build: %v (full log: %s)", e.Err, e.Log)
}

func (e *BuildError) Unwrap() error { return e.Err }

// ErrForeignSource means the build source holds something besides the flake:
// `nix build` would copy it into the world-readable store, so it is refused.
var ErrForeignSource = errors.New("the build source holds more than flake.nix and flake.lock")

// Available tells whether the nix program is on PATH: without it, start
// uses the portable guest.
func Available() bool {
	_, err := exec.LookPath("nix")
	return err == nil
}

// Build runs `nix build` of the runner of the flake in stateDir/flake (the
// caller writes flake.nix there), leaving the result at stateDir/runner.
// nix's output streams to progress (may be nil) and, whole, into
// stateDir/build.log. It returns the runner link's path.
//
// The source is a directory of its own because nix copies a `path:` flake
// whole into the store, which every user can read: built from state/, it
// would take the client key, the guest's host key and var.img with it, and
// fail on a qmp.sock left by a killed VM. Build refuses to run when the
// source holds anything but flake.nix and flake.lock (ErrForeignSource).
//
// The flake is addressed as `path:.` from its directory, so no character of
// the directory's name is ever parsed as part of a flake URL.
func Build(ctx context.Context, stateDir string, progress io.Writer) (string, error) {
	nix, err := exec.LookPath("nix")
	if err != nil {
		return "", fmt.Errorf("cannot build the sandbox runner: %w", ErrNixNotFound)
	}
	stateDir, err = filepath.Abs(stateDir)
	if err != nil {
		return "", fmt.Errorf("cannot build the sandbox runner: %w", err)
	}
	source := filepath.Join(stateDir, statedir.FlakeDir)
	if err := checkSource(source); err != nil {
		return "", fmt.Errorf("cannot build the sandbox runner: %w", err)
	}
	logPath := filepath.Join(stateDir, statedir.BuildLog)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("cannot build the sandbox runner: %w", err)
	}
	defer logFile.Close()

	if progress == nil {
		progress = io.Discard
	}
	tail := &tailWriter{max: TailLines}
	out := &lockedWriter{w: io.MultiWriter(logFile, tail, progress)}
	link := filepath.Join(stateDir, statedir.RunnerLink)
	cmd := exec.CommandContext(ctx, nix,
		"--extra-experimental-features", "nix-command flakes",
		"build", "--print-build-logs",
		"--out-link", link,
		"path:.#runner")
	cmd.Dir = source
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", &BuildError{Log: logPath, Tail: tail.lines(), Err: err}
	}
	return link, nil
}

// checkSource verifies that dir holds flake.nix, perhaps flake.lock, and
// nothing else, each a regular file.
func checkSource(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	hasFlake := false
	for _, e := range entries {
		switch name := e.Name(); {
		case (name == statedir.FlakeFile || name == statedir.FlakeLock) && e.Type().IsRegular():
			hasFlake = hasFlake || name == statedir.FlakeFile
		default:
			return fmt.Errorf("%w: %q is in %q (move it away)", ErrForeignSource, name, dir)
		}
	}
	if !hasFlake {
		return fmt.Errorf("no %s in %q", statedir.FlakeFile, dir)
	}
	return nil
}

// lockedWriter serialises writes: exec copies stdout and stderr from two goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailWriter keeps the last max complete lines written to it, plus a final
// partial line. Carriage returns (progress redraws) end a line too.
type tailWriter struct {
	max     int
	done    []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\n' || c == '\r' {
			t.push()
			continue
		}
		t.partial = append(t.partial, c)
	}
	return len(p), nil
}

func (t *tailWriter) push() {
	line := strings.TrimRight(string(t.partial), " \t")
	t.partial = t.partial[:0]
	if line == "" {
		return
	}
	t.done = append(t.done, line)
	if len(t.done) > t.max {
		t.done = t.done[len(t.done)-t.max:]
	}
}

func (t *tailWriter) lines() []string {
	out := slices.Clone(t.done)
	if p := strings.TrimSpace(string(bytes.TrimRight(t.partial, " \t"))); p != "" {
		out = append(out, p)
		if len(out) > t.max {
			out = out[len(out)-t.max:]
		}
	}
	return out
}

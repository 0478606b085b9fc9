package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GitEnv names the variable that pins the trusted git binary. The Nix package
// sets it to the git of the closure; tests set it to a real git so that a fake
// `git` first on PATH cannot be picked up.
const GitEnv = "KEYSTONE_AGENT_GIT"

// TrustedGit returns the absolute path of the host's own git binary: $KEYSTONE_AGENT_GIT
// when set (it must be absolute), else `git` looked up on PATH once, at the caller's
// start. It is only ever run against the host repository, never the workspace.
func TrustedGit() (string, error) {
	if p := os.Getenv(GitEnv); p != "" {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("%s must be an absolute path, got %q", GitEnv, p)
		}
		return p, nil
	}
	p, err := exec.LookPath("git")
	if err != nil {
		return "", fmt.Errorf("cannot find the git binary on PATH (set %s): %w", GitEnv, err)
	}
	return filepath.Abs(p)
}

// hostGit runs the trusted git in the host repository. Its environment drops the
// GIT_* variables that would point git at another repository, object store or
// index: the user's config and hooks still apply, as they would in a shell.
type hostGit struct {
	bin string
	dir string
}

func (g hostGit) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") && !strings.HasPrefix(kv, "GIT_CONFIG_") &&
			!strings.HasPrefix(kv, "GIT_AUTHOR_") && !strings.HasPrefix(kv, "GIT_COMMITTER_") {
			continue
		}
		// git's messages (and the system's, such as "No space left on
		// device") in English, whatever the user's locale: keystone tells
		// git's failures apart by them (HostFaultError, a cut-short checkout).
		if strings.HasPrefix(kv, "LC_ALL=") || strings.HasPrefix(kv, "LC_MESSAGES=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "LC_MESSAGES=C")
}

// command prepares git with args in the host repository.
func (g hostGit) command(ctx context.Context, args ...string) *exec.Cmd {
	// No automatic gc or maintenance from keystone's own commands: a detached
	// `gc --auto` after a merge would repack while the next sync reads the
	// repository in-process, and it is the user's git that should decide when.
	pre := []string{"-C", g.dir, "-c", "gc.auto=0", "-c", "maintenance.auto=false"}
	cmd := exec.CommandContext(ctx, g.bin, append(pre, args...)...)
	cmd.Env = g.env()
	return cmd
}

// run runs git with args and stdin; a failure carries git's own stderr.
func (g hostGit) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := g.command(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	if os.Getenv("KEYSTONE_SYNC_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "trace: git %s %v\n", args[0], time.Since(t0))
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return out, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return out, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}

// ErrNotWorkTree says a directory is not inside a git working tree.
var ErrNotWorkTree = errors.New("not a git working tree")

// RepoRoot returns the top of the working tree containing dir, resolved by
// the trusted git as clone and sync resolve the host repository, so that all
// three agree on which repository it is.
func RepoRoot(ctx context.Context, dir string) (string, error) {
	bin, err := TrustedGit()
	if err != nil {
		return "", err
	}
	d, err := hostGit{bin: bin, dir: dir}.dirs(ctx)
	return d.top, err
}

// hostDirs are the resolved directories of the host repository.
type hostDirs struct {
	top    string // working tree
	gitDir string // per-worktree git dir (HEAD lives here)
	common string // common dir: objects and refs
}

func (g hostGit) dirs(ctx context.Context) (hostDirs, error) {
	if d, ok := plainDirs(g.dir); ok {
		return d, nil
	}
	out, err := g.run(ctx, nil, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-dir", "--git-common-dir")
	if err != nil {
		return hostDirs{}, fmt.Errorf("%q is %w: %v", g.dir, ErrNotWorkTree, err)
	}
	f := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(f) != 3 {
		return hostDirs{}, fmt.Errorf("unexpected output of git rev-parse in %q", g.dir)
	}
	return hostDirs{top: f[0], gitDir: f[1], common: f[2]}, nil
}

// plainDirs resolves the common layout without a git process (a sync starts
// one fewer): dir is the top of a working tree whose .git is a directory of its
// own, with no commondir and no core.worktree. Anything else (a linked
// worktree's or a submodule's .git file, a subdirectory, a relocated working
// tree) is left to `git rev-parse`.
func plainDirs(dir string) (hostDirs, bool) {
	top, err := filepath.Abs(dir)
	if err == nil {
		top, err = filepath.EvalSymlinks(top)
	}
	if err != nil {
		return hostDirs{}, false
	}
	gitDir := filepath.Join(top, ".git")
	if fi, err := os.Lstat(gitDir); err != nil || !fi.IsDir() {
		return hostDirs{}, false
	}
	if _, err := os.Lstat(filepath.Join(gitDir, "commondir")); err == nil {
		return hostDirs{}, false
	}
	cfg, err := os.ReadFile(filepath.Join(gitDir, "config"))
	if err != nil || bytes.Contains(bytes.ToLower(cfg), []byte("worktree")) || bytes.Contains(bytes.ToLower(cfg), []byte("bare = true")) {
		return hostDirs{}, false
	}
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil {
		return hostDirs{}, false
	}
	return hostDirs{top: top, gitDir: gitDir, common: gitDir}, true
}

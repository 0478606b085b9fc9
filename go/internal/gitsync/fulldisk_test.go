package gitsync

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/testenv/smallfs"
)

// A sync into a host repository whose file system fills up half-way fails
// with the host's reason, not as the workspace's fault (the watcher tries a
// host fault again, a hostile workspace only once its branches change), and
// leaves the host's refs, files and objects as they were, with no temporary
// directory; once there is room, the same sync completes.
func TestSyncOnAFullDiskChangesNothing(t *testing.T) { inEveryLocale(t, syncOnAFullDisk) }

func syncOnAFullDisk(t *testing.T) {
	fs := smallfs.Mount(t, 32<<20)
	host := filepath.Join(fs, "project")
	gitIn(t, fs, "init", "-q", "-b", "main", host)
	commit(t, host, "initial", map[string]string{"README.md": "hello\n"})
	ws := filepath.Join(t.TempDir(), "workspace")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 12<<20)
	rand.New(rand.NewSource(1)).Read(big) // incompressible: the pack is as large
	tip := commit(t, ws, "big", map[string]string{"big.bin": string(big)})
	filler := filepath.Join(fs, "filler")
	if err := os.WriteFile(filler, make([]byte, 24<<20), 0o600); err != nil { // 8 MiB left
		t.Fatal(err)
	}
	before := snapshot(t, host)

	_, err := Sync(context.Background(), opts(host, ws))
	var hf *HostFaultError
	if !errors.As(err, &hf) || errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "No space left on device") {
		t.Fatalf("sync of 12 MiB into 8 MiB: %v; want a host fault naming the full disk, not ErrHostile", err)
	}
	t.Logf("sync on a full disk: %v", err)
	if d := diffSnapshots(before, snapshot(t, host)); len(d) > 0 {
		t.Errorf("host changed after the failed sync: %v", d)
	}
	if left, _ := filepath.Glob(filepath.Join(host, ".git", "objects", incomingPrefix+"*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	gitIn(t, host, "fsck", "--no-dangling")

	os.Remove(filler)
	mustSync(t, opts(host, ws))
	if got := gitIn(t, host, "rev-parse", "main"); got != tip {
		t.Fatalf("main = %s, want %s", got, tip)
	}
	gitIn(t, host, "fsck", "--no-dangling")
}

// A fast-forward whose checkout runs out of space half-way (the pack fits,
// the files do not) leaves git's HEAD and index as they were but files
// written, cut short and deleted in the working tree; the sync puts them back
// as HEAD has them, so the host's working tree is clean, and the next sync,
// with room, completes.
func TestSyncFastForwardOnAFullDiskIsUndone(t *testing.T) { inEveryLocale(t, fastForwardOnAFullDisk) }

func fastForwardOnAFullDisk(t *testing.T) {
	fs := smallfs.Mount(t, 32<<20)
	host := filepath.Join(fs, "project")
	gitIn(t, fs, "init", "-q", "-b", "main", host)
	start := commit(t, host, "initial", map[string]string{"a.txt": "a\n", "old.txt": "old\n", ".gitignore": "gen/\n",
		"m": "a file that becomes a directory\n", "n/x": "a directory that becomes a file\n"})
	ws := filepath.Join(t.TempDir(), "workspace")
	if err := Clone(context.Background(), host, ws); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 12<<20)
	rand.New(rand.NewSource(1)).Read(big)
	gitIn(t, ws, "rm", "-q", "old.txt", "m", "n/x")
	write(t, filepath.Join(ws, "m", "y"), "now a directory\n")
	write(t, filepath.Join(ws, "n"), "now a file\n")
	write(t, filepath.Join(ws, "gen", "z.txt"), "generated, committed anyway\n")
	gitIn(t, ws, "add", "-f", "gen/z.txt")
	tip := commit(t, ws, "big", map[string]string{"a.txt": "changed\n", "big.bin": string(big), "zz/new.txt": "new\n"})
	filler := filepath.Join(fs, "filler")
	if err := os.WriteFile(filler, make([]byte, 17<<20), 0o600); err != nil { // the pack fits, its checkout does not
		t.Fatal(err)
	}
	before := snapshot(t, host)

	_, err := Sync(context.Background(), opts(host, ws))
	var merr *ManualMergeError
	if !errors.As(err, &merr) || merr.Kind != KindMergeFailed {
		t.Fatalf("sync whose checkout cannot be written: %v; want a failed merge", err)
	}
	t.Logf("fast-forward on a full disk: %v", err)
	if got := gitIn(t, host, "rev-parse", "main"); got != start {
		t.Fatalf("main moved to %s", got)
	}
	os.Remove(filler)
	if st := gitIn(t, host, "status", "--porcelain", "--untracked-files=all", "--ignored"); st != "" {
		t.Errorf("the failed fast-forward left the working tree changed:\n%s", st)
	}
	for _, dir := range []string{"gen", "zz"} {
		if _, err := os.Stat(filepath.Join(host, dir)); err == nil {
			t.Errorf("the directory %s the failed checkout made is still there", dir)
		}
	}
	after := snapshot(t, host)
	for _, f := range []string{"a.txt", "old.txt", "big.bin", "gen/z.txt", "zz/new.txt", "m", "m/y", "n", "n/x"} {
		if before[f] != after[f] {
			t.Errorf("%s: %.20q, was %.20q", f, after[f], before[f])
		}
	}

	mustSync(t, opts(host, ws))
	if got := gitIn(t, host, "rev-parse", "main"); got != tip {
		t.Fatalf("main = %s, want %s", got, tip)
	}
	gitIn(t, host, "fsck", "--no-dangling")
}

// A fast-forward refused before it wrote anything (another git holds
// index.lock, and may be writing the same files) is not undone: the sync
// leaves every file of the working tree to the other git.
func TestSyncFastForwardRefusedByAnotherGitIsLeftAlone(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "edit", map[string]string{"README.md": "the sandbox's\n"})
	// The host's git, except that its merge finds another git at work: that
	// one has written README.md and holds the index.
	wrapper := filepath.Join(t.TempDir(), "git")
	write(t, wrapper, `#!/bin/sh
for a; do
  if [ "$a" = merge ]; then
    echo "the other git's" > "$2/README.md" # keystone runs git -C <host> …
    echo "fatal: Unable to create '$2/.git/index.lock': File exists." >&2
    exit 128
  fi
done
exec `+realGit+` "$@"
`)
	os.Chmod(wrapper, 0o755)
	o := opts(host, ws)
	o.Git = wrapper
	_, err := Sync(context.Background(), o)
	var merr *ManualMergeError
	if !errors.As(err, &merr) || merr.Kind != KindMergeFailed || strings.Contains(err.Error(), "put back") {
		t.Fatalf("sync whose merge finds index.lock: %v; want a failed merge, nothing put back", err)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "README.md")); string(b) != "the other git's\n" {
		t.Errorf("README.md is %q; the other git's file was touched", b)
	}
}

// inEveryLocale runs test as is and again with git speaking German: keystone
// tells git's failures apart by what git says, so git must say it in English
// whatever the user's locale (the locale needs to exist: Debian's locales,
// localedef -i de_DE -f UTF-8 de_DE.UTF-8; without it, skipped, except under CI).
func inEveryLocale(t *testing.T, test func(t *testing.T)) {
	t.Run("C", test)
	t.Run("de_DE", func(t *testing.T) {
		if out, _ := exec.Command("locale", "-a").Output(); !strings.Contains(strings.ToLower(string(out)), "de_de.utf8") {
			if os.Getenv("CI") != "" {
				t.Fatal("the de_DE.UTF-8 locale is missing")
			}
			t.Skip("the de_DE.UTF-8 locale is missing (localedef -i de_DE -f UTF-8 de_DE.UTF-8)")
		}
		t.Setenv("LC_ALL", "de_DE.UTF-8")
		t.Setenv("LANG", "de_DE.UTF-8")
		t.Setenv("LANGUAGE", "de")
		test(t)
	})
}

package gitsync

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The listing of the sandbox's uncommitted files agrees with `git status
// --porcelain` (run here on a test repository only) in every state a file can
// be in, for index versions 2 and 4.
func TestListUncommittedAgreesWithGit(t *testing.T) {
	for _, version := range []string{"2", "4"} {
		t.Run("index v"+version, func(t *testing.T) {
			ws := filepath.Join(t.TempDir(), "ws")
			gitIn(t, t.TempDir(), "init", "-q", "-b", "main", ws)
			commit(t, ws, "base", map[string]string{
				"mod.txt": "a\n", "staged.txt": "a\n", "both.txt": "a\n", "gone.txt": "a\n", "rm.txt": "a\n",
				"exec.sh": "#!/bin/sh\n", "d/keep.txt": "k\n", "racy.txt": "aaaa\n", ".gitignore": "*.log\nbuild/\n",
				"sub/.gitignore": "local.tmp\n", "via/x.txt": "x\n", "real/x.txt": "x\n",
			})
			os.Symlink("mod.txt", filepath.Join(ws, "link"))
			gitIn(t, ws, "add", "link")
			gitIn(t, ws, "commit", "-q", "-m", "link")
			gitIn(t, ws, "update-index", "--index-version", version)
			write(t, filepath.Join(ws, "mod.txt"), "b\n")
			write(t, filepath.Join(ws, "staged.txt"), "b\n")
			gitIn(t, ws, "add", "staged.txt")
			write(t, filepath.Join(ws, "both.txt"), "b\n")
			gitIn(t, ws, "add", "both.txt")
			write(t, filepath.Join(ws, "both.txt"), "c\n")
			os.Remove(filepath.Join(ws, "gone.txt"))
			gitIn(t, ws, "rm", "-q", "rm.txt")
			os.Chmod(filepath.Join(ws, "exec.sh"), 0o755)
			os.Remove(filepath.Join(ws, "link"))
			os.Symlink("staged.txt", filepath.Join(ws, "link"))
			// A directory that became a link: git does not follow it to the
			// file of the same name behind it, so via/x.txt is deleted.
			os.RemoveAll(filepath.Join(ws, "via"))
			os.Symlink("real", filepath.Join(ws, "via"))
			// A link to a directory outside: one untracked entry, not walked.
			outside := t.TempDir()
			write(t, filepath.Join(outside, "secret.txt"), "s\n")
			os.Symlink(outside, filepath.Join(ws, "outlink"))
			write(t, filepath.Join(ws, "new.txt"), "n\n")
			write(t, filepath.Join(ws, "added.txt"), "n\n")
			gitIn(t, ws, "add", "added.txt")
			write(t, filepath.Join(ws, "newdir", "a", "x.txt"), "x\n")
			write(t, filepath.Join(ws, "only-ignored", "x.log"), "x\n")
			write(t, filepath.Join(ws, "build", "out.bin"), "x\n")
			write(t, filepath.Join(ws, "sub", "local.tmp"), "x\n")
			write(t, filepath.Join(ws, "sub", "kept.txt"), "x\n")
			write(t, filepath.Join(ws, "d", "new.log"), "x\n")
			os.MkdirAll(filepath.Join(ws, "empty"), 0o755)
			write(t, filepath.Join(ws, "intent.txt"), "i\n")
			gitIn(t, ws, "add", "-N", "intent.txt")
			// Racy: the index records racy.txt with the very mtime the index
			// file has, to the nanosecond (a change in the tick the index was
			// written); the file then changes, same size, same mtime. Only its
			// content tells.
			now := time.Now()
			write(t, filepath.Join(ws, "racy.txt"), "bbbb\n")
			os.Chtimes(filepath.Join(ws, "racy.txt"), now, now)
			gitIn(t, ws, "update-index", "racy.txt")
			write(t, filepath.Join(ws, "racy.txt"), "cccc\n")
			os.Chtimes(filepath.Join(ws, "racy.txt"), now, now)
			os.Chtimes(filepath.Join(ws, ".git", "index"), now, now)

			// Listed before git status runs: git rewrites the index when it
			// refreshes it, which would take the racy case away.
			l := listUncommitted(ws)
			if l.err != nil {
				t.Fatal(l.err)
			}
			var want []string
			for _, line := range strings.Split(strings.TrimRight(gitIn(t, ws, "status", "--porcelain", "--untracked-files=normal"), "\n"), "\n") {
				want = append(want, line)
			}
			var got []string
			for _, u := range l.files {
				got = append(got, u.Status+" "+u.Path)
			}
			sort.Strings(want)
			sort.Strings(got)
			if len(want) < 13 {
				t.Fatalf("the fixture has only %d changes:\n%s", len(want), strings.Join(want, "\n"))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("listed:\n%s\ngit status says:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

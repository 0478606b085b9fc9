package gitsync

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// Every kind of change a sync brings, counted as keystone always counted
// them: no rename detection, binary files (a NUL in the first 8000 bytes) and
// gitlinks count no lines, a symlink counts its target as one line, and no
// attribute, diff driver or external diff of either side applies.
func TestSyncCountsLinesOfEveryKindOfChange(t *testing.T) {
	host, ws := newPair(t)
	commit(t, host, "more", map[string]string{
		"old.txt": "1\n2\n3\n", "moved.txt": "a\nb\nc\n", "empty-doomed": "",
		"bin-doomed.dat": "\x00abc\n", "bin-edit.dat": "\x00x\n", "link-target.txt": "x\ny\n",
		"dir/f.txt": "1\n", "mode.sh": "echo\n", "marked.txt": "m\n",
		".gitattributes": "marked.txt -diff\n",
	})
	gitIn(t, ws, "pull", "-q", host, "main") // fixture only: the trusted CLI on test repositories
	gitIn(t, ws, "mv", "old.txt", "renamed.txt")
	gitIn(t, ws, "mv", "moved.txt", "moved2.txt")
	gitIn(t, ws, "rm", "-q", "-r", "empty-doomed", "bin-doomed.dat", "link-target.txt", "dir")
	os.Symlink("README.md", filepath.Join(ws, "link-target.txt"))
	os.Symlink("src/main.go", filepath.Join(ws, "ln"))
	os.Chmod(filepath.Join(ws, "mode.sh"), 0o755)
	commit(t, ws, "agent", map[string]string{
		"moved2.txt": "a\nB\nc\nd\n", "empty-new": "", "bin-edit.dat": "\x00y\nz\n",
		"bin-new.dat": "x\x00\n", "dir": "one\ntwo", "marked.txt": "m\nn\n",
		".gitattributes": "* diff=evil\n*.txt -diff\n",
	})
	gitIn(t, ws, "update-index", "--add", "--cacheinfo", "160000,"+gitIn(t, host, "rev-parse", "HEAD")+",sub")
	gitIn(t, ws, "commit", "-q", "-m", "a gitlink")
	// The user's own drivers, which the sandbox's attributes name: they must not run.
	marker := filepath.Join(t.TempDir(), "ran")
	gitIn(t, host, "config", "diff.evil.textconv", "touch "+marker+";")
	gitIn(t, host, "config", "diff.external", "touch "+marker+";")
	// (Only for a file whose diff attribute nothing else is meant to set:
	// info/attributes overrides the working tree's, which would hide a leak
	// of the host's "marked.txt -diff" into the dry run's count.)
	write(t, filepath.Join(host, ".git", "info", "attributes"), "moved2.txt diff=evil\n")
	const ins, del = 3 + 4 + 1 + 1 + 2 + 1 + 2, 3 + 3 + 2 + 1 + 1
	for _, dry := range []bool{true, false} {
		o := opts(host, ws)
		o.DryRun = dry
		r := mustSync(t, o)
		if r.FilesChanged != 17 || r.Insertions != ins || r.Deletions != del {
			t.Errorf("dry run %v: %d files, +%d -%d; want 17 files, +%d -%d", dry, r.FilesChanged, r.Insertions, r.Deletions, ins, del)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a diff driver of the user's config ran")
	}
}

// A file larger than countMax counts no lines (git would hold it whole, and
// an index of its lines, in memory).
func TestSyncCountsNoLinesOfHugeFiles(t *testing.T) {
	host, ws := newPair(t)
	commit(t, ws, "huge", map[string]string{"huge.txt": strings.Repeat("x\n", countMax/2+1), "small.txt": "a\n"})
	r := mustSync(t, opts(host, ws))
	if r.FilesChanged != 2 || r.Insertions != 1 || r.Deletions != 0 {
		t.Errorf("%d files, +%d -%d; want 2 files, +1 -0", r.FilesChanged, r.Insertions, r.Deletions)
	}
}

func TestParseNumstat(t *testing.T) {
	long := strings.Repeat("p", sandboxgit.MaxPathLength)
	for _, tc := range []struct {
		in       string
		ins, del int
		ok       bool
	}{
		{"", 0, 0, true},
		{"3\t1\ta.txt\x00-\t-\tb.bin\x000\t0\tempty\x00", 3, 1, true},
		{"1\t2\ttab\tand\nnewline\x00", 1, 2, true},
		{"20\t20\t" + long + "\x00", 20, 20, true},
		{"0\t0\t" + long + long + "\x00", 0, 0, false}, // longer than any record of an incoming path
		{"1\t2\ta.txt", 0, 0, false},                   // cut short
		{"1\t2\t\x00", 0, 0, false},                    // no path: a rename's form
		{"1 2 a\x00", 0, 0, false},
		{"+1\t2\ta\x00", 0, 0, false},
		{"-1\t2\ta\x00", 0, 0, false},
		{"9223372036854775807\t0\ta\x001\t0\tb\x00", 0, 0, false}, // the sum overflows
	} {
		ins, del, err := parseNumstat(strings.NewReader(tc.in))
		if (err == nil) != tc.ok || ins != tc.ins || del != tc.del {
			t.Errorf("%.40q: +%d -%d, %v; want +%d -%d, ok %v", tc.in, ins, del, err, tc.ins, tc.del, tc.ok)
		}
	}
}

// FuzzParseNumstat: the paths in git's output are the sandbox's. The parser
// never panics, and a record added to what it accepts adds its counts; the
// corpus in testdata/fuzz is git's own output for added, removed, binary and
// empty files and paths with a tab or a newline.
func FuzzParseNumstat(f *testing.F) {
	f.Add([]byte("3\t1\ta.txt\x00-\t-\tb.bin\x00"), uint16(1), uint16(2))
	f.Add([]byte("1\t2\t\x00a\x00b\x00"), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, a, d uint16) {
		ins, del, err := parseNumstat(bytes.NewReader(data))
		if err != nil {
			return
		}
		if ins < 0 || del < 0 {
			t.Fatalf("negative counts +%d -%d", ins, del)
		}
		more := fmt.Appendf(bytes.Clone(data), "%d\t%d\tp\x00", a, d)
		ins2, del2, err := parseNumstat(bytes.NewReader(more))
		if err == nil && (ins2 != ins+int(a) || del2 != del+int(d)) {
			t.Fatalf("one more record: +%d -%d, want +%d -%d", ins2, del2, ins+int(a), del+int(d))
		}
	})
}

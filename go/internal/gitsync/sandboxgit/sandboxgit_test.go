package sandboxgit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// git runs the real git for fixtures.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_AUTHOR_NAME=T",
		"GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// historyRepo makes a repository whose files change a little in every commit,
// so that git stores them as delta chains when it packs them.
func historyRepo(t testing.TB, commits int) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	rng := rand.New(rand.NewSource(1))
	var lines []string
	for i := 0; i < 3000; i++ {
		lines = append(lines, fmt.Sprintf("line %d %x\n", i, rng.Int63()))
	}
	for c := 0; c < commits; c++ {
		at := rng.Intn(len(lines) - 40)
		lines = append(lines[:at], lines[at+rng.Intn(20):]...)                                     // a block goes
		lines = append(lines[:10], append([]string{fmt.Sprintf("new %d\n", c)}, lines[10:]...)...) // a line comes
		os.MkdirAll(filepath.Join(dir, "d", fmt.Sprint(c%3)), 0o755)
		os.WriteFile(filepath.Join(dir, "big.txt"), []byte(strings.Join(lines, "")), 0o644)
		os.WriteFile(filepath.Join(dir, "d", fmt.Sprint(c%3), "f.txt"), []byte(fmt.Sprint(c, "\n")), 0o644)
		os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
		git(t, dir, "add", "-A")
		git(t, dir, "commit", "-q", "-m", fmt.Sprint("commit ", c))
	}
	return dir
}

// allObjects lists every object of the repository with its type, as git sees it.
func allObjects(t testing.TB, dir string) map[plumbing.Hash]string {
	out := git(t, dir, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)")
	m := map[plumbing.Hash]string{}
	for _, l := range strings.Split(out, "\n") {
		h, typ, _ := strings.Cut(l, " ")
		m[plumbing.NewHash(h)] = typ
	}
	return m
}

// TestReadsWhatGitWrote reads every object of repositories packed the ways git
// packs them (loose, offset deltas 50 deep, deltas by name, a second pack on top)
// and compares each with git's own reading.
func TestReadsWhatGitWrote(t *testing.T) {
	for _, tc := range []struct {
		name string
		pack func(t *testing.T, dir string)
	}{
		{"loose", func(t *testing.T, dir string) {}},
		{"offset deltas 50 deep", func(t *testing.T, dir string) {
			git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=50")
		}},
		{"deltas by name", func(t *testing.T, dir string) {
			names := git(t, dir, "rev-list", "--objects", "--all")
			cmd := exec.Command("git", "-C", dir, "pack-objects", "-q", "--no-delta-base-offset", "--depth=50", ".git/objects/pack/pack")
			cmd.Stdin = strings.NewReader(names + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			git(t, dir, "prune-packed")
		}},
		{"two packs and loose objects", func(t *testing.T, dir string) {
			git(t, dir, "repack", "-q", "-a", "-d", "--depth=50")
			os.WriteFile(filepath.Join(dir, "late.txt"), []byte("late\n"), 0o644)
			git(t, dir, "add", "-A")
			git(t, dir, "commit", "-q", "-m", "late")
			git(t, dir, "repack", "-q", "-d")
			os.WriteFile(filepath.Join(dir, "later.txt"), []byte("later\n"), 0o644)
			git(t, dir, "add", "-A")
			git(t, dir, "commit", "-q", "-m", "later")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := historyRepo(t, 30)
			tc.pack(t, dir)
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			objects := allObjects(t, dir)
			for h, typ := range objects {
				got, data, err := r.ReadObject(h, plumbing.AnyObject, MaxResolveSize)
				if err != nil {
					t.Fatalf("%s %s: %v", typ, h, err)
				}
				if got.String() != typ {
					t.Fatalf("%s is a %s, git says %s", h, got, typ)
				}
				otyp, size, rc, err := r.OpenObject(h)
				if err != nil {
					t.Fatal(err)
				}
				streamed, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || otyp != got || size != int64(len(data)) || !bytes.Equal(streamed, data) {
					t.Fatalf("%s streamed differently: %v", h, err)
				}
				s, err := r.Locate(h)
				if err != nil {
					t.Fatal(err)
				}
				if n, err := r.ObjectSize(s); !s.Loose && (err != nil || n != size) {
					t.Fatalf("%s: ObjectSize %d, %v; want %d", h, n, err, size)
				}
			}
			if len(objects) < 100 {
				t.Fatalf("only %d objects", len(objects))
			}
			branches, err := r.Branches()
			if err != nil || len(branches) != 1 || branches[0].Name != "main" || branches[0].Hash.String() != git(t, dir, "rev-parse", "main") {
				t.Fatalf("branches %+v, %v", branches, err)
			}
			if r.HeadBranch() != "main" {
				t.Errorf("HEAD branch %q", r.HeadBranch())
			}
		})
	}
}

func TestMissingObject(t *testing.T) {
	dir := historyRepo(t, 1)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, err := r.ReadObject(plumbing.NewHash("0123456789012345678901234567890123456789"), plumbing.AnyObject, 1<<20); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v, want ErrNotFound", err)
	}
}

func TestBranchesFromPackedRefsAndFiles(t *testing.T) {
	dir := historyRepo(t, 2)
	git(t, dir, "branch", "a/b")
	git(t, dir, "branch", "packed")
	git(t, dir, "pack-refs", "--all")
	git(t, dir, "branch", "-f", "packed", "HEAD~1") // the loose file wins over packed-refs
	git(t, dir, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	branches, err := r.Branches()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range branches {
		got = append(got, b.Name+"="+b.Hash.String()[:7])
	}
	want := []string{"a/b=" + git(t, dir, "rev-parse", "--short=7", "main"), "main=" + git(t, dir, "rev-parse", "--short=7", "main"),
		"packed=" + git(t, dir, "rev-parse", "--short=7", "HEAD~1")}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("branches %v, want %v", got, want)
	}
}

// A ref being updated in the workspace while a sync reads it (git writes
// refs/heads/<branch>.lock, then renames it over the branch) is not a branch:
// git's own files backend skips *.lock names. Found by the QA campaign: syncs
// run while the agent committed were refused as "invalid branch name
// master.lock" or "does not hold an object name".
func TestBranchesSkipRefLocks(t *testing.T) {
	dir := historyRepo(t, 1)
	for name, content := range map[string]string{"main.lock": "", "a/b.lock": "half-writ"} {
		p := filepath.Join(dir, ".git", "refs", "heads", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	branches, err := r.Branches()
	if err != nil {
		t.Fatalf("branches while a ref is locked: %v", err)
	}
	if len(branches) != 1 || branches[0].Name != "main" {
		t.Errorf("branches %v, want main alone", branches)
	}
}

func TestCheckBranchName(t *testing.T) {
	for name, ok := range map[string]bool{
		"main": true, "feature/x": true, "a.b": true, "v1.0-rc": true,
		"": false, "HEAD": false, "-x": false, "a/": false, "a//b": false, "a..b": false, "a.lock": false,
		".hidden": false, "a/.b": false, "a b": false, "a~1": false, "a^": false, "a:b": false, "a?": false,
		"a*": false, "a[": false, "a\\b": false, "a\x7f": false, "a\x01": false, "@": false, "a@{1}": false,
		"a.": false, "../x": false, "x/../y": false,
	} {
		if err := CheckBranchName(name); (err == nil) != ok {
			t.Errorf("CheckBranchName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestCheckEntryName(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, ".gitignore": true, "git": true, ".github": true, "a\nb": true, "..a": true,
		"": false, ".": false, "..": false, "a/b": false, ".git": false, ".GIT": false, ".git.": false,
		".git ": false, "git~1": false, "GIT~1": false, ".g\u200cit": false, ".git\ufeff": false, "a\x00": false,
	} {
		if err := CheckEntryName(name); (err == nil) != ok {
			t.Errorf("CheckEntryName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestOpenRefusesBorrowedObjectsAndOtherFormats(t *testing.T) {
	for name, craft := range map[string]func(dir string){
		"alternates": func(d string) {
			os.WriteFile(filepath.Join(d, ".git/objects/info/alternates"), []byte("/tmp\n"), 0o644)
		},
		"commondir": func(d string) { os.WriteFile(filepath.Join(d, ".git/commondir"), []byte("/tmp\n"), 0o644) },
		"gitdir file": func(d string) {
			os.RemoveAll(filepath.Join(d, ".git"))
			os.WriteFile(filepath.Join(d, ".git"), []byte("gitdir: /etc\n"), 0o644)
		},
		"sha256": func(d string) {
			f, _ := os.OpenFile(filepath.Join(d, ".git/config"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("[extensions]\n\tobjectFormat = sha256\n")
			f.Close()
		},
		"reftable": func(d string) {
			f, _ := os.OpenFile(filepath.Join(d, ".git/config"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("[extensions]\n\trefStorage = reftable\n")
			f.Close()
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := historyRepo(t, 1)
			os.MkdirAll(filepath.Join(dir, ".git/objects/info"), 0o755)
			craft(dir)
			if r, err := Open(dir); !errors.Is(err, ErrHostile) {
				if r != nil {
					r.Close()
				}
				t.Fatalf("Open: %v, want ErrHostile", err)
			}
		})
	}
}

func TestParseTreeSince(t *testing.T) {
	h := func(c byte) plumbing.Hash { var x plumbing.Hash; x[0] = c; return x }
	tree := func(entries ...string) []byte {
		var b bytes.Buffer
		for _, e := range entries {
			mode, name, _ := strings.Cut(e, " ")
			b.WriteString(mode + " " + name[:len(name)-1] + "\x00")
			hh := h(name[len(name)-1])
			b.Write(hh[:])
		}
		return b.Bytes()
	}
	old := tree("100644 a1", "100644 a-b1", "40000 c1", "100644 d1", "100644 e1")
	nu := tree("100644 a1", "100644 a-b2", "100644 b1", "40000 c1", "100755 d1", "100644 e1", "100644 f1")
	for _, tr := range [][]byte{old, nu} {
		if err := ParseTree(tr, func([]byte, Mode, plumbing.Hash) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	ParseTreeSince(nu, version(t, old), func(name []byte, mode Mode, _ plumbing.Hash) error {
		got = append(got, fmt.Sprint(string(name), mode))
		return nil
	})
	if want := "a-b1 b1 d2 f1"; strings.Join(got, " ") != want {
		t.Errorf("new entries %q, want %q", got, want)
	}
}

// A large directory that grows by one file: the entries around it are read as
// old's by their bytes, and a file that repeats one of them is refused.
func TestParseTreeSinceSharedBytes(t *testing.T) {
	entry := func(name string, c byte) []byte {
		var x plumbing.Hash
		x[0] = c
		return append([]byte("100644 "+name+"\x00"), x[:]...)
	}
	var old, grown, repeated []byte
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("f%03d", i)
		old = append(old, entry(name, 1)...)
		grown = append(grown, entry(name, 1)...)
		repeated = append(repeated, entry(name, 1)...)
		if i == 150 {
			grown = append(grown, entry(name+"x", 2)...)
			repeated = append(repeated, entry(name, 1)...)
		}
	}
	var got []string
	v, err := ParseTreeSince(grown, version(t, old), func(name []byte, _ Mode, _ plumbing.Hash) error {
		got = append(got, string(name))
		return nil
	})
	if err != nil || strings.Join(got, " ") != "f150x" {
		t.Errorf("ParseTreeSince: %v, new entries %q, want f150x", err, got)
	}
	checkVersion(t, v)
	if _, err := ParseTreeSince(repeated, version(t, old), nopEntry); err == nil {
		t.Error("a repeated entry after the shared bytes was accepted")
	}
}

// Parsing resumes only where no file name is pending: a directory that repeats
// a file is refused whether the file is in the bytes shared with old before it
// or new just before bytes shared after it.
func TestParseTreeSincePendingNames(t *testing.T) {
	entry := func(mode, name string) string { return mode + " " + name + "\x00" + strings.Repeat("h", 20) }
	for _, c := range []struct{ old, data []string }{
		{ // "a" and "a-b" shared, then the directory "a"
			[]string{entry("100644", "a"), entry("100644", "a-b"), entry("40000", "b")},
			[]string{entry("100644", "a"), entry("100644", "a-b"), entry("40000", "a"), entry("40000", "b")},
		},
		{ // a new "a", then old's "a-b" and directory "a"
			[]string{entry("100644", "a-b"), entry("40000", "a")},
			[]string{entry("100644", "a"), entry("100644", "a-b"), entry("40000", "a")},
		},
	} {
		old, data := []byte(strings.Join(c.old, "")), []byte(strings.Join(c.data, ""))
		if err := ParseTree(data, nopEntry); err == nil {
			t.Fatalf("ParseTree accepted %q", data)
		}
		if _, err := ParseTreeSince(data, version(t, old), nopEntry); err == nil {
			t.Errorf("ParseTreeSince accepted %q after %q", data, old)
		}
	}
}

// version parses a tree that must be valid.
func version(t testing.TB, data []byte) *TreeVersion {
	t.Helper()
	v, err := ParseTreeSince(data, nil, nopEntry)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func nopEntry([]byte, Mode, plumbing.Hash) error { return nil }

// checkVersion fails unless v, which a later version resumes from, is its tree
// parsed whole: its entries at the same offsets, and no entry flagged as
// leaving no file name but its own pending that does not.
func checkVersion(t testing.TB, v *TreeVersion) {
	t.Helper()
	whole := version(t, v.data)
	if len(v.starts) != len(whole.starts) {
		t.Fatalf("%d entries, parsed whole %d", len(v.starts), len(whole.starts))
	}
	for i, s := range v.starts {
		if w := whole.starts[i]; s&^pendingNone != w&^pendingNone || s&pendingNone > w&pendingNone {
			t.Fatalf("entry %d: %#x, parsed whole %#x", i, s, w)
		}
	}
}

// A chain of versions, each parsed since the one before as the walk does:
// names that are prefixes of others ("a", "a-", "a-b", the directory "a") and
// entries repeated or out of order now and then, so that parsing resumes and
// skips next to pending file names. Every version is accepted or refused as
// ParseTree does, with exactly the entries the one before lacks reported.
func TestParseTreeSinceChain(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	names := []string{"a", "a-", "a-b", "a.c", "a0", "b", "b-", "c", "d", "e"}
	type ent struct {
		name string
		dir  bool
		h    byte
	}
	key := func(e ent) string {
		if e.dir {
			return e.name + "/"
		}
		return e.name
	}
	encode := func(es []ent) []byte {
		var b []byte
		for _, e := range es {
			mode := "100644"
			if e.dir {
				mode = "40000"
			}
			b = append(b, mode+" "+e.name+"\x00"...)
			b = append(b, bytes.Repeat([]byte{e.h}, 20)...)
		}
		return b
	}
	var cur []ent
	for i := 0; i < 40; i++ { // a large directory, so that skips are long
		cur = append(cur, ent{name: fmt.Sprintf("f%03d", i), h: 1})
	}
	var old *TreeVersion
	var oldData []byte
	for step := 0; step < 3000; step++ {
		next := append([]ent(nil), cur...)
		for n := rng.Intn(3) + 1; n > 0; n-- {
			switch e := (ent{name: names[rng.Intn(len(names))], dir: rng.Intn(3) == 0, h: byte(rng.Intn(3))}); rng.Intn(4) {
			case 0, 1: // insert in order, or replace the entry of that key
				j := 0
				for j < len(next) && key(next[j]) < key(e) {
					j++
				}
				if j < len(next) && key(next[j]) == key(e) {
					next[j] = e
				} else {
					next = append(next[:j], append([]ent{e}, next[j:]...)...)
				}
			case 2: // remove one
				if len(next) > 0 {
					j := rng.Intn(len(next))
					next = append(next[:j], next[j+1:]...)
				}
			case 3: // change a hash
				if len(next) > 0 {
					next[rng.Intn(len(next))].h++
				}
			}
		}
		if rng.Intn(10) == 0 && len(next) > 1 { // repeat or swap: refused, unless it stays valid
			j := rng.Intn(len(next) - 1)
			if rng.Intn(2) == 0 {
				next = append(next[:j+1], next[j:]...)
			} else {
				next[j], next[j+1] = next[j+1], next[j]
			}
		}
		data := encode(next)
		errAll := ParseTree(data, nopEntry)
		reported := map[string]bool{}
		v, err := ParseTreeSince(data, old, func(name []byte, mode Mode, h plumbing.Hash) error {
			reported[fmt.Sprint(string(name), mode, h[0])] = true
			return nil
		})
		if (err == nil) != (errAll == nil) {
			t.Fatalf("step %d: ParseTree: %v, ParseTreeSince: %v\nold %q\nnew %q", step, errAll, err, oldData, data)
		}
		if err != nil {
			continue
		}
		checkVersion(t, v)
		had := map[string]bool{}
		if old != nil {
			ParseTree(oldData, func(name []byte, mode Mode, h plumbing.Hash) error {
				had[fmt.Sprint(string(name), mode, h[0])] = true
				return nil
			})
		}
		ParseTree(data, func(name []byte, mode Mode, h plumbing.Hash) error {
			if k := fmt.Sprint(string(name), mode, h[0]); reported[k] == had[k] {
				t.Fatalf("step %d: entry %s reported %v, in the version before %v", step, k, reported[k], had[k])
			}
			return nil
		})
		cur, old, oldData = next, v, data
	}
}

func TestParseCommit(t *testing.T) {
	const tree = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
	const parent = "parent 1111111111111111111111111111111111111111\n"
	const people = "author A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n"
	for _, tc := range []struct {
		name, data string
		parents    int
		subject    string
		err        string // "" for none
	}{
		{"root", tree + people + "\nsubject\n\nbody\n", 0, "subject", ""},
		{"merge", tree + parent + parent + people + "\nmerge\n", 2, "merge", ""},
		{"no message", tree + people, 0, "", ""},
		{"extra headers", tree + people + "encoding UTF-8\ngpgsig -----BEGIN\n more\n\nsigned\n", 0, "signed", ""},
		// git reads parents only right after the tree: a late one is an unknown header
		{"late parent", tree + people + parent + "\nlate\n", 0, "late", ""},
		// fsck: the last header line must end (found by FuzzParseCommit)
		{"unterminated header", tree + people + "parent", 0, "", "commit ends in its header"},
		{"NUL in header", tree + people + "encoding \x00\n\nx\n", 0, "", "NUL in its header"},
		{"NUL in message", tree + people + "\nx\x00y\n", 0, "x\x00y", ""},
		{"no tree", people + "\nx\n", 0, "", "does not start with its tree"},
		{"no author", tree + "committer A <a@x> 1 +0000\n\nx\n", 0, "", "no author"},
		{"no committer", tree + "author A <a@x> 1 +0000\n\nx\n", 0, "", "no committer"},
		{"header only tree", tree, 0, "", "ends in its header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCommit([]byte(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseCommit = %v; want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || len(c.Parents) != tc.parents || c.Subject != tc.subject {
				t.Fatalf("ParseCommit = %d parents, subject %q, %v; want %d, %q", len(c.Parents), c.Subject, err, tc.parents, tc.subject)
			}
		})
	}
}

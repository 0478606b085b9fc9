package sandboxgit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestWriteFuzzSeeds writes the seed corpus in testdata/fuzz from objects git
// itself wrote: trees, commits (a merge among them), deltas with their bases,
// a pack index, loose object files, pack entries and packed-refs. Run it after
// changing a parser: KEYSTONE_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KEYSTONE_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("writes testdata/fuzz; set KEYSTONE_WRITE_FUZZ_SEEDS=1")
	}
	dir := historyRepo(t, 12)
	git(t, dir, "checkout", "-q", "-b", "side", "HEAD~3")
	os.WriteFile(filepath.Join(dir, "side.txt"), []byte("side\n"), 0o644)
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "side")
	git(t, dir, "checkout", "-q", "main")
	git(t, dir, "merge", "-q", "--no-edit", "side")
	loose := map[string][]byte{}
	for _, h := range []string{"HEAD", "HEAD^{tree}", "HEAD:empty"} {
		hex := git(t, dir, "rev-parse", h)
		loose[h], _ = os.ReadFile(filepath.Join(dir, ".git", "objects", hex[:2], hex[2:]))
	}
	git(t, dir, "pack-refs", "--all")
	git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=10")
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.loadPacks()
	p := r.packs[0]
	seeds := map[string][]string{}
	add := func(target string, args ...string) { seeds[target] = append(seeds[target], strings.Join(args, "\n")) }
	bytesArg := func(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")" }
	deltas := 0
	for i := 0; i < p.idx.Count(); i++ {
		e, err := p.header(p.idx.Offset(i))
		if err != nil {
			t.Fatal(err)
		}
		typ, data, err := r.readPacked(p, e.off, 1<<30, 0)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.kind == plumbing.OFSDeltaObject && deltas < 6:
			_, base, _ := r.readPacked(p, e.base, 1<<30, 1)
			if len(base) > 8<<10 {
				continue // the corpus stays small
			}
			deltas++
			delta, _ := p.readEntry(e, 1<<30)
			add("FuzzPatchDelta", bytesArg(base), bytesArg(delta))
		case e.kind == plumbing.TreeObject && len(seeds["FuzzParseTree"]) < 4:
			add("FuzzParseTree", bytesArg(data))
		case e.kind == plumbing.CommitObject && len(seeds["FuzzParseCommit"]) < 4:
			add("FuzzParseCommit", bytesArg(data))
		case e.kind == plumbing.BlobObject && len(seeds["FuzzPackEntry"]) < 2 && len(data) < 4096:
			raw := make([]byte, p.entryEnd(e.off)-e.off)
			p.f.ReadAt(raw, e.off)
			add("FuzzPackEntry", bytesArg(raw))
		}
		_ = typ
	}
	idx, _ := os.ReadFile(filepath.Join(dir, ".git", "objects", "pack", p.name+".idx"))
	add("FuzzParseIndex", bytesArg(idx), fmt.Sprintf("int64(%d)", p.size))
	for _, b := range loose {
		add("FuzzLooseObject", bytesArg(b))
	}
	refs, _ := os.ReadFile(filepath.Join(dir, ".git", "packed-refs"))
	add("FuzzPackedRefs", bytesArg(refs))
	for _, v := range []string{"2", "4"} {
		git(t, dir, "update-index", "--index-version", v)
		index, _ := os.ReadFile(filepath.Join(dir, ".git", "index"))
		add("FuzzParseDirCache", bytesArg(index))
	}
	for target, list := range seeds {
		d := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(d, 0o755)
		for i, s := range list {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("seed-git-%d", i)), []byte("go test fuzz v1\n"+s+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

package sandboxgit

import (
	"bytes"
	"errors"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/untrusted"
)

// Branch is one local branch of the workspace.
type Branch struct {
	Name string // without refs/heads/
	Hash plumbing.Hash
}

// Branches lists refs/heads/* (sorted by name): loose ref files, which win, and
// packed-refs. A branch that is a symbolic ref is left out; a name git could not
// store, a value that is no object name, or more than MaxBranches are refused.
func (r *Repo) Branches() ([]Branch, error) {
	found := map[string]plumbing.Hash{}
	packed, err := r.readSmall("packed-refs", MaxPackedRefs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := parsePackedRefs(packed, found); err != nil {
			return nil, err
		}
	}
	if err := r.looseBranches(found); err != nil {
		return nil, err
	}
	out := make([]Branch, 0, len(found))
	for name, h := range found {
		if err := CheckBranchName(name); err != nil {
			return nil, err
		}
		out = append(out, Branch{name, h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// parsePackedRefs adds the branches of a packed-refs file to found.
func parsePackedRefs(b []byte, found map[string]plumbing.Hash) error {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 || line[0] == '#' || line[0] == '^' {
			continue // the header, or the peeled value of the tag above
		}
		hex, name, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return hostile("packed-refs has a malformed line")
		}
		branch, ok := strings.CutPrefix(string(name), "refs/heads/")
		if !ok {
			continue
		}
		h, err := objectName(hex, "refs/heads/"+branch)
		if err != nil {
			return err
		}
		if len(found) >= MaxBranches {
			return tooLarge("the number of branches", MaxBranches+1, MaxBranches)
		}
		found[branch] = h
	}
	return nil
}

// looseBranches adds the files under refs/heads to found. Directories are
// opened with O_DIRECTORY inside the os.Root, so no link leads out and nothing
// swapped in for a directory (a FIFO) is opened; entries are taken in name
// order, as git lists them.
func (r *Repo) looseBranches(found map[string]plumbing.Hash) error {
	return r.branchesUnder("refs/heads", found)
}

func (r *Repo) branchesUnder(dir string, found map[string]plumbing.Hash) error {
	d, err := untrusted.OpenDir(r.root, dir)
	if err != nil {
		if dir == "refs/heads" && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return hostile("cannot list the workspace's branches: %v", err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return hostile("cannot list the workspace's branches: %v", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		p := dir + "/" + e.Name()
		if e.IsDir() {
			if err := r.branchesUnder(p, found); err != nil {
				return err
			}
			continue
		}
		// A *.lock file is a ref git is writing (it renames the lock over the
		// ref when done), not a branch: git's files backend skips them too.
		if !e.Type().IsRegular() || strings.HasSuffix(p, ".lock") {
			continue
		}
		b, err := r.readSmall(p, MaxRefFile)
		if err != nil {
			return err
		}
		value := bytes.TrimRight(b, "\n")
		if bytes.HasPrefix(value, []byte("ref: ")) {
			continue
		}
		h, err := objectName(value, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "refs/heads/")
		if _, ok := found[name]; !ok && len(found) >= MaxBranches {
			return tooLarge("the number of branches", MaxBranches+1, MaxBranches)
		}
		found[name] = h
	}
	return nil
}

// objectName parses the value of ref as a SHA-1 object name.
func objectName(hex []byte, ref string) (plumbing.Hash, error) {
	if len(hex) == 64 && isHex(hex) {
		return plumbing.ZeroHash, hostile("%s is a SHA-256 object name; sync supports SHA-1 repositories only", ref)
	}
	if len(hex) != 40 || !isHex(hex) {
		return plumbing.ZeroHash, hostile("%s does not hold an object name", ref)
	}
	return plumbing.NewHash(string(hex)), nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// HeadBranch is the branch HEAD names, "" when HEAD is detached or unreadable.
func (r *Repo) HeadBranch() string {
	b, err := r.readSmall("HEAD", MaxRefFile)
	if err != nil {
		return ""
	}
	target, ok := strings.CutPrefix(strings.TrimRight(string(b), "\n"), "ref: refs/heads/")
	if !ok || CheckBranchName(target) != nil {
		return ""
	}
	return target
}

// CheckBranchName applies git's check-ref-format rules to a branch name (the
// part after refs/heads/), with go-git's validator and the rules it leaves out,
// so that it can be placed under refs/remotes/keystone/<name>/ as it is.
func CheckBranchName(b string) error {
	if plumbing.ReferenceName("refs/heads/"+b).Validate() != nil || b == "HEAD" ||
		strings.ContainsAny(b, "\x7f") || path.Clean("/"+b) != "/"+b {
		return hostile("invalid branch name %q", b)
	}
	for _, c := range b {
		if c < 0x20 {
			return hostile("invalid branch name %q", b)
		}
	}
	return nil
}

// Head is the commit HEAD names, zero on an unborn branch.
func (r *Repo) Head() (plumbing.Hash, error) {
	b, err := r.readSmall("HEAD", MaxRefFile)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	value := bytes.TrimRight(b, "\n")
	target, ok := bytes.CutPrefix(value, []byte("ref: refs/heads/"))
	if !ok {
		return objectName(value, "HEAD")
	}
	branches, err := r.Branches()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for _, br := range branches {
		if br.Name == string(target) {
			return br.Hash, nil
		}
	}
	return plumbing.ZeroHash, nil
}

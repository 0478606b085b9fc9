package sandboxgit

import (
	"bytes"

	"github.com/go-git/go-git/v5/plumbing"
)

// Commit is what a sync needs of a commit.
type Commit struct {
	Tree    plumbing.Hash
	Parents []plumbing.Hash
	Subject string // the first line of the message
}

// ParseCommit reads a raw commit object, which must start as git fsck requires:
// a "tree" line, "parent" lines, then "author" and "committer" lines. Other
// headers (encoding, gpgsig with its continuation lines, mergetag) are skipped,
// as git skips them: a "parent" among them is not a parent. The message
// follows the first empty line. As fsck, it refuses a header with a NUL or
// whose last line does not end.
func ParseCommit(data []byte) (Commit, error) {
	var c Commit
	header := data
	if end := bytes.Index(data, []byte("\n\n")); end >= 0 {
		header = data[:end+1]
	} else if len(data) > 0 && data[len(data)-1] != '\n' {
		return c, hostile("commit ends in its header")
	}
	if bytes.IndexByte(header, 0) >= 0 {
		return c, hostile("commit has a NUL in its header")
	}
	line := func() ([]byte, bool) {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, false
		}
		l := data[:i]
		data = data[i+1:]
		return l, true
	}
	hashAfter := func(l []byte, key string) (plumbing.Hash, bool) {
		hex, ok := bytes.CutPrefix(l, []byte(key))
		if !ok || len(hex) != 40 || !isHex(hex) {
			return plumbing.ZeroHash, false
		}
		return plumbing.NewHash(string(hex)), true
	}
	l, ok := line()
	if c.Tree, ok = hashAfter(l, "tree "); !ok {
		return c, hostile("commit does not start with its tree")
	}
	for {
		if l, ok = line(); !ok {
			return c, hostile("commit ends in its header")
		}
		p, isParent := hashAfter(l, "parent ")
		if !isParent {
			break
		}
		c.Parents = append(c.Parents, p)
	}
	if !bytes.HasPrefix(l, []byte("author ")) {
		return c, hostile("commit has no author")
	}
	if l, ok = line(); !ok || !bytes.HasPrefix(l, []byte("committer ")) {
		return c, hostile("commit has no committer")
	}
	for len(l) > 0 {
		if l, ok = line(); !ok {
			return c, nil // no message
		}
	}
	subject, _, _ := bytes.Cut(data, []byte{'\n'})
	c.Subject = string(subject)
	return c, nil
}

package gitsync

import (
	"bytes"
	"context"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/utils/diff"
)

// binarySniff is how much of a file git looks at for a NUL byte to call it binary.
const binarySniff = 8000

// blobStat is what the summary needs of a blob: its lines, or that it is binary.
type blobStat struct {
	lines  int
	binary bool
}

// lineCounter learns a blobStat from a stream, so that blobs are counted while
// they are verified or packed instead of being read once more.
type lineCounter struct {
	n, lines int
	binary   bool
	last     byte
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if c.n < binarySniff {
		head := p[:min(len(p), binarySniff-c.n)]
		c.binary = c.binary || bytes.IndexByte(head, 0) >= 0
	}
	c.lines += bytes.Count(p, []byte{'\n'})
	if len(p) > 0 {
		c.last = p[len(p)-1]
	}
	c.n += len(p)
	return len(p), nil
}

func (c *lineCounter) stat() blobStat {
	lines := c.lines
	if c.n > 0 && c.last != '\n' {
		lines++
	}
	return blobStat{lines: lines, binary: c.binary}
}

// lineStats adds up inserted and deleted lines over changes like `git diff
// --shortstat`: added and removed files count all their lines, binary files
// none; modified text files are diffed line by line.
func lineStats(ctx context.Context, s storer.EncodedObjectStorer, known map[plumbing.Hash]blobStat, changes object.Changes) (ins, del int, err error) {
	stat := func(h plumbing.Hash) (blobStat, error) {
		if st, ok := known[h]; ok {
			return st, nil
		}
		var c lineCounter
		err := readBlob(s, h, &c)
		return c.stat(), err
	}
	for _, ch := range changes {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		from, to := blobOf(ch.From), blobOf(ch.To)
		switch {
		case from.IsZero() && to.IsZero():
		case from.IsZero():
			st, err := stat(to)
			if err != nil {
				return 0, 0, err
			}
			if !st.binary {
				ins += st.lines
			}
		case to.IsZero():
			st, err := stat(from)
			if err != nil {
				return 0, 0, err
			}
			if !st.binary {
				del += st.lines
			}
		default:
			i, d, err := modified(s, from, to)
			if err != nil {
				return 0, 0, err
			}
			ins, del = ins+i, del+d
		}
	}
	return ins, del, nil
}

// blobOf is the blob of a change side, zero for a missing side or a gitlink.
func blobOf(e object.ChangeEntry) plumbing.Hash {
	if e.Name == "" || e.TreeEntry.Mode == filemode.Submodule || e.TreeEntry.Mode == filemode.Dir {
		return plumbing.ZeroHash
	}
	return e.TreeEntry.Hash
}

func readBlob(s storer.EncodedObjectStorer, h plumbing.Hash, w io.Writer) error {
	o, err := s.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return err
	}
	r, err := o.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

func modified(s storer.EncodedObjectStorer, from, to plumbing.Hash) (ins, del int, err error) {
	var a, b bytes.Buffer
	if err := readBlob(s, from, &a); err != nil {
		return 0, 0, err
	}
	if err := readBlob(s, to, &b); err != nil {
		return 0, 0, err
	}
	for _, x := range [][]byte{a.Bytes(), b.Bytes()} {
		if bytes.IndexByte(x[:min(len(x), binarySniff)], 0) >= 0 {
			return 0, 0, nil
		}
	}
	for _, d := range diff.Do(a.String(), b.String()) {
		n := countLines(d.Text)
		// diffmatchpatch's operations: -1 delete, 0 equal, 1 insert (its
		// package is go-git's dependency, not ours).
		switch {
		case d.Type > 0:
			ins += n
		case d.Type < 0:
			del += n
		}
	}
	return ins, del, nil
}

func countLines(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			n++
		}
	}
	if len(s) > 0 && s[len(s)-1] != '\n' {
		n++
	}
	return n
}

package gitsync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/diff"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// binarySniff is how much of a file git looks at for a NUL byte to call it binary.
const binarySniff = 8000

// blobStat is what the summary needs of a blob: its lines, or that it is binary.
type blobStat struct {
	lines  int
	binary bool
}

// lineCounter learns a blobStat from a stream.
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

// blobSource opens a blob's content: its size and a reader.
type blobSource func(h plumbing.Hash) (int64, io.ReadCloser, error)

// blob opens a blob arriving with this sync from the workspace (bounded, see
// sandboxgit), any other from the host. A blob too large to rebuild from its
// delta in memory is not opened: it counts as binary (errTooLarge).
func (s *syncer) blob(h plumbing.Hash) (int64, io.ReadCloser, error) {
	if s.tr.has(h) {
		typ, size, r, err := s.ws.OpenObject(h)
		var limit *sandboxgit.LimitError
		if errors.As(err, &limit) {
			return 0, nil, errTooLarge
		}
		if err == nil && typ != plumbing.BlobObject {
			r.Close()
			err = hostile("object %s is a %s, expected a blob", h, typ)
		}
		return size, r, err
	}
	// go-git's storage is not safe for concurrent use, and it holds a whole
	// object in memory: one reader at a time, and no large object.
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	if size, err := s.host.EncodedObjectSize(h); err != nil || size > diffMax {
		if err == nil {
			err = errTooLarge
		}
		return 0, nil, err
	}
	o, err := s.host.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return 0, nil, err
	}
	r, err := o.Reader()
	if err != nil {
		return 0, nil, err
	}
	// A memory object: reading it later, unlocked, touches no storage.
	b, err := io.ReadAll(r)
	r.Close()
	return o.Size(), io.NopCloser(bytes.NewReader(b)), err
}

// diffMax is the largest modified file diffed line by line for the summary; a
// larger one counts as changed with no lines, as binary files do.
const diffMax = 16 << 20

var errTooLarge = errors.New("too large to count its lines")

// lineStats adds up inserted and deleted lines over changes like `git diff
// --shortstat`: added and removed files count all their lines, binary files
// none; modified text files are diffed line by line. Files are counted on
// every CPU (inflating them is most of the work).
func lineStats(ctx context.Context, blob blobSource, changes object.Changes) (ins, del int, err error) {
	var mu sync.Mutex
	var errs []error
	work := make(chan *object.Change)
	var wg sync.WaitGroup
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range work {
				i, d, err := safeChangeLines(blob, ch)
				mu.Lock()
				ins, del = ins+i, del+d
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, ch := range changes {
		if ctx.Err() != nil {
			break
		}
		work <- ch
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		return 0, 0, errs[0]
	}
	return ins, del, ctx.Err()
}

// safeChangeLines is changeLines on a worker goroutine, where Sync's recover
// cannot reach: a panic is the change's error.
func safeChangeLines(blob blobSource, ch *object.Change) (ins, del int, err error) {
	defer recoverInto(&err)
	return changeLines(blob, ch)
}

// changeLines counts the lines one change inserts and deletes.
func changeLines(blob blobSource, ch *object.Change) (ins, del int, err error) {
	from, to := blobOf(ch.From), blobOf(ch.To)
	switch {
	case from.IsZero() && to.IsZero():
		return 0, 0, nil
	case from.IsZero():
		st, err := countLinesOf(blob, to)
		if st.binary {
			return 0, 0, err
		}
		return st.lines, 0, err
	case to.IsZero():
		st, err := countLinesOf(blob, from)
		if st.binary {
			return 0, 0, err
		}
		return 0, st.lines, err
	}
	return modified(blob, from, to)
}

// countLinesOf counts a blob's lines as it streams.
func countLinesOf(blob blobSource, h plumbing.Hash) (blobStat, error) {
	var c lineCounter
	_, r, err := blob(h)
	if errors.Is(err, errTooLarge) {
		return blobStat{binary: true}, nil
	}
	if err != nil {
		return blobStat{}, err
	}
	defer r.Close()
	_, err = io.Copy(&c, r)
	return c.stat(), err
}

// blobOf is the blob of a change side, zero for a missing side or a gitlink.
func blobOf(e object.ChangeEntry) plumbing.Hash {
	if e.Name == "" || e.TreeEntry.Mode == filemode.Submodule || e.TreeEntry.Mode == filemode.Dir {
		return plumbing.ZeroHash
	}
	return e.TreeEntry.Hash
}

// readSmallBlob reads a blob of at most diffMax bytes; ok is false for a larger one.
func readSmallBlob(blob blobSource, h plumbing.Hash) (data []byte, ok bool, err error) {
	size, r, err := blob(h)
	if errors.Is(err, errTooLarge) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	if size > diffMax {
		return nil, false, nil
	}
	var b bytes.Buffer
	b.Grow(int(size))
	_, err = io.Copy(&b, r)
	return b.Bytes(), true, err
}

func modified(blob blobSource, from, to plumbing.Hash) (ins, del int, err error) {
	a, okA, err := readSmallBlob(blob, from)
	if err != nil || !okA {
		return 0, 0, err
	}
	b, okB, err := readSmallBlob(blob, to)
	if err != nil || !okB {
		return 0, 0, err
	}
	for _, x := range [][]byte{a, b} {
		if bytes.IndexByte(x[:min(len(x), binarySniff)], 0) >= 0 {
			return 0, 0, nil
		}
	}
	for _, d := range diff.Do(string(a), string(b)) {
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

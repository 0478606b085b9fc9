package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/keystone-agent/keystone/internal/gitsync/packwrite"
	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// maxObjects bounds the objects one sync brings (docs/sync.md, "Limits").
const maxObjects = 10_000_000

// transfer collects what the host lacks of the workspace's branches and writes
// it as one pack. Commits, trees and tags are read whole, hashed against their
// names and checked (trees as git fsck does) while walking; blobs are only
// named by the trees and travel as stored. The pack is verified as a whole by
// the host's index-pack (install.go).
type transfer struct {
	ws   *sandboxgit.Repo
	have func(plumbing.Hash) bool // the host has it (and everything it reaches)

	seen    map[plumbing.Hash]struct{}
	small   []rawObject                          // commits, trees and tags, read and checked
	raw     map[plumbing.Hash]int                // index into small
	commits map[plumbing.Hash]*sandboxgit.Commit // the arriving commits, parsed
	blobs   []want                               // named by trees; read when the pack is written
}

type rawObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
	path string // trees: where the tree sits ("/" for a root), to find a delta base
}

type want struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	path string
}

func newTransfer(ws *sandboxgit.Repo, have func(plumbing.Hash) bool) *transfer {
	return &transfer{ws: ws, have: have,
		seen: map[plumbing.Hash]struct{}{}, raw: map[plumbing.Hash]int{},
		commits: map[plumbing.Hash]*sandboxgit.Commit{}}
}

// count is the number of objects the pack will hold.
func (t *transfer) count() int { return len(t.small) + len(t.blobs) }

// has reports whether h arrives with this transfer.
func (t *transfer) has(h plumbing.Hash) bool { _, ok := t.seen[h]; return ok }

// hashes lists every object the pack must hold.
func (t *transfer) hashes() []plumbing.Hash {
	out := make([]plumbing.Hash, 0, t.count())
	for h := range t.seen {
		out = append(out, h)
	}
	return out
}

// memory returns an arriving commit, tree or tag from memory.
func (t *transfer) memory(h plumbing.Hash) (plumbing.EncodedObject, bool) {
	i, ok := t.raw[h]
	if !ok {
		return nil, false
	}
	o := &plumbing.MemoryObject{}
	o.SetType(t.small[i].typ)
	o.Write(t.small[i].data)
	return o, true
}

// walk visits everything reachable from tips that the host does not have. It
// stops at objects the host has: a repository that has a commit has its whole
// history (shallow host repositories are refused). Commits, trees and tags are
// read, hashed and checked on every CPU; the rest of the transfer's state is
// only touched under the walk's lock.
func (t *transfer) walk(ctx context.Context, tips []want) error {
	if err := t.ws.LoadPacks(); err != nil {
		return err
	}
	w := &walker{t: t}
	w.cond = sync.NewCond(&w.mu)
	w.mu.Lock()
	for _, tip := range tips {
		w.push(tip)
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work(ctx)
		}()
	}
	wg.Wait()
	return w.err
}

type walker struct {
	t     *transfer
	mu    sync.Mutex
	cond  *sync.Cond
	stack []want
	busy  int // objects being read
	err   error
}

// push marks x seen and queues it, unless the host has it (w.mu held).
func (w *walker) push(x want) {
	t := w.t
	if _, ok := t.seen[x.hash]; ok || w.err != nil || t.have(x.hash) {
		return
	}
	if len(t.seen) == maxObjects {
		w.err = &sandboxgit.LimitError{What: "the number of new objects", Size: maxObjects + 1, Limit: maxObjects}
		return
	}
	t.seen[x.hash] = struct{}{}
	if x.typ == plumbing.BlobObject {
		t.blobs = append(t.blobs, x)
		return
	}
	w.stack = append(w.stack, x)
}

// work reads queued objects until none is left or queued by another worker.
func (w *walker) work(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.stack) == 0 && w.busy > 0 && w.err == nil {
			w.cond.Wait()
		}
		if w.err != nil || len(w.stack) == 0 {
			w.cond.Broadcast()
			return
		}
		x := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		w.busy++
		w.mu.Unlock()
		o, c, next, err := w.t.read(x)
		if err == nil {
			err = ctx.Err()
		}
		w.mu.Lock()
		w.busy--
		if err != nil && w.err == nil {
			w.err = err
		}
		if err == nil {
			w.t.add(o, c)
			for _, n := range next {
				w.push(n)
			}
		}
		w.cond.Broadcast()
	}
}

// add records an object read by the walk.
func (t *transfer) add(o rawObject, c *sandboxgit.Commit) {
	t.raw[o.hash] = len(t.small)
	t.small = append(t.small, o)
	if c != nil {
		t.commits[o.hash] = c
	}
}

// read loads a commit, tree or tag, verified and checked, and returns it with
// what it points at. It touches no state of the transfer.
func (t *transfer) read(w want) (rawObject, *sandboxgit.Commit, []want, error) {
	typ, data, err := t.ws.ReadObject(w.hash, w.typ, sandboxgit.MaxMetaSize)
	if err != nil {
		return rawObject{}, nil, nil, fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	o := rawObject{w.hash, typ, data, w.path}
	switch typ {
	case plumbing.CommitObject:
		c, err := sandboxgit.ParseCommit(data)
		if err != nil {
			return o, nil, nil, fmt.Errorf("commit %s: %w", w.hash, err)
		}
		next := []want{{hash: c.Tree, typ: plumbing.TreeObject, path: "/"}}
		for _, p := range c.Parents {
			next = append(next, want{hash: p, typ: plumbing.CommitObject})
		}
		return o, &c, next, nil
	case plumbing.TreeObject:
		var next []want
		err := sandboxgit.ParseTree(data, func(name []byte, mode sandboxgit.Mode, h plumbing.Hash) error {
			switch mode {
			case sandboxgit.ModeDir:
				next = append(next, want{hash: h, typ: plumbing.TreeObject, path: w.path + string(name) + "/"})
			case sandboxgit.ModeFile, sandboxgit.ModeExecutable, sandboxgit.ModeSymlink:
				next = append(next, want{hash: h, typ: plumbing.BlobObject, path: w.path + string(name)})
			}
			return nil
		})
		if err != nil {
			return o, nil, nil, sandboxgit.TreeError(w.hash, err)
		}
		return o, nil, next, nil
	case plumbing.TagObject:
		mem := &plumbing.MemoryObject{}
		mem.SetType(typ)
		mem.Write(data)
		tag, err := object.DecodeTag(nil, mem)
		if err != nil {
			return o, nil, nil, hostile("tag %s is malformed: %v", w.hash, err)
		}
		return o, nil, []want{{hash: tag.Target, typ: tag.TargetType}}, nil
	}
	return o, nil, nil, hostile("object %s has unexpected type %s", w.hash, typ)
}

// memoryMax is the largest blob read into memory (to be compressed in parallel
// with others, and to serve as a delta base); larger ones stream.
const memoryMax = 8 << 20

// writePack writes every collected object to p. An object stored in a workspace
// pack is copied as it is stored, compressed, when that is a whole object or a
// delta whose base travels too or is on the host; anything else (loose objects,
// deltas against objects that do not travel) is inflated and compressed again.
func (t *transfer) writePack(ctx context.Context, p *packwrite.Writer) error {
	var deltas packwrite.Deltas
	for _, o := range t.small {
		if ok, err := t.copyStored(p, o.hash, o.typ); err != nil {
			return err
		} else if ok {
			continue
		}
		if err := p.Add(deltas.Entry(o.typ, o.data, o.path)); err != nil {
			return err
		}
	}
	for _, w := range t.blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if ok, err := t.copyStored(p, w.hash, plumbing.BlobObject); err != nil {
			return err
		} else if ok {
			continue
		}
		if err := t.recompress(p, &deltas, w); err != nil {
			return err
		}
	}
	return nil
}

// copyStored copies h's stored entry into p when it can travel as it is.
func (t *transfer) copyStored(p *packwrite.Writer, h plumbing.Hash, typ plumbing.ObjectType) (bool, error) {
	s, err := t.ws.Locate(h)
	if err != nil {
		return false, fmt.Errorf("cannot read object %s: %w", h, err)
	}
	switch {
	case s.Loose:
		return false, nil
	case s.Kind == plumbing.REFDeltaObject:
		if !t.has(s.Base) && !t.have(s.Base) {
			return false, nil
		}
		if typ == plumbing.BlobObject { // the host's git will rebuild it: bound it first
			size, err := t.ws.ObjectSize(s)
			if err != nil {
				return false, fmt.Errorf("cannot read object %s: %w", h, err)
			}
			if size > sandboxgit.MaxBlobSize {
				return false, &sandboxgit.LimitError{What: "object " + h.String(), Size: size, Limit: sandboxgit.MaxBlobSize}
			}
		}
	case s.Kind != typ:
		return false, hostile("object %s is a %s, expected a %s", h, s.Kind, typ)
	case s.Size > sandboxgit.MaxBlobSize:
		return false, &sandboxgit.LimitError{What: "object " + h.String(), Size: s.Size, Limit: sandboxgit.MaxBlobSize}
	}
	return true, p.Raw(s.Kind, s.Size, s.Base, func(w io.Writer) error { return t.ws.CopyStored(w, s) })
}

// recompress inflates a blob and writes it again: from memory, maybe as a
// delta, or streamed when large.
func (t *transfer) recompress(p *packwrite.Writer, deltas *packwrite.Deltas, w want) error {
	typ, size, r, err := t.ws.OpenObject(w.hash)
	if err != nil {
		return fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	defer r.Close()
	if typ != plumbing.BlobObject {
		return hostile("object %s is a %s, expected a blob", w.hash, typ)
	}
	if size > memoryMax {
		if err := p.Stream(typ, size, r); err != nil {
			return fmt.Errorf("cannot read object %s: %w", w.hash, err)
		}
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(int(size))
	if _, err := io.Copy(&buf, r); err != nil {
		return fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	return p.Add(deltas.Entry(typ, buf.Bytes(), w.path))
}

package gitsync

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// walk visits everything reachable from tips that the host does not have. It
// stops at objects the host has: a repository that has a commit has its whole
// history (shallow host repositories are refused). Commits, trees and tags are
// read, hashed and checked on every CPU; what is met is recorded in sharded
// states, and the rest of the transfer is only touched under the walk's lock.
func (t *transfer) walk(ctx context.Context, tips []want) error {
	if err := t.ws.LoadPacks(); err != nil {
		return err
	}
	w := &walker{t: t}
	w.cond = sync.NewCond(&w.mu)
	for _, tip := range tips {
		if t.states.claim(tip.hash, t.have) {
			w.stack = append(w.stack, tip)
		}
	}
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
		o, c, next, err := w.t.safeRead(x)
		if err == nil {
			err = ctx.Err()
		}
		w.mu.Lock()
		w.busy--
		if err == nil {
			err = w.t.add(o, c, next)
		}
		if err != nil && w.err == nil {
			w.err = err
		}
		if err == nil {
			for _, n := range next {
				if n.typ != plumbing.BlobObject {
					w.stack = append(w.stack, n)
				}
			}
		}
		w.cond.Broadcast()
	}
}

// add records an object read by the walk and the blobs it names (the walk's
// lock held).
func (t *transfer) add(o rawObject, c *sandboxgit.Commit, next []want) error {
	if len(t.small)+len(t.blobs)+len(next) > maxObjects {
		return &sandboxgit.LimitError{What: "the number of new objects", Size: int64(len(t.small) + len(t.blobs) + len(next)), Limit: maxObjects}
	}
	t.metaBytes += int64(len(o.data))
	if !o.packed && t.kept+int64(len(o.data)) <= keepMax {
		t.kept += int64(len(o.data))
	} else {
		o.data = nil
	}
	t.raw[o.hash] = len(t.small)
	t.small = append(t.small, o)
	if c != nil {
		t.commits[o.hash] = c
	}
	for _, n := range next {
		if n.typ == plumbing.BlobObject {
			t.blobs = append(t.blobs, n)
		}
	}
	return nil
}

// lastVersion is the tree last walked at path, nil for none.
func (t *transfer) lastVersion(path string) *sandboxgit.TreeVersion {
	t.lastMu.Lock()
	defer t.lastMu.Unlock()
	return t.last[path]
}

func (t *transfer) setLastVersion(path string, v *sandboxgit.TreeVersion) {
	t.lastMu.Lock()
	defer t.lastMu.Unlock()
	t.last[path] = v
}

// safeRead is read on a worker goroutine, where Sync's recover cannot reach:
// a panic (none is expected: every parser is fuzzed) is the object's error.
func (t *transfer) safeRead(w want) (o rawObject, c *sandboxgit.Commit, next []want, err error) {
	defer recoverInto(&err)
	return t.read(w)
}

// read loads a commit, tree or tag, verified and checked, and returns it with
// the objects it names that the walk meets for the first time and the host
// lacks. It touches only the transfer's states.
func (t *transfer) read(w want) (rawObject, *sandboxgit.Commit, []want, error) {
	typ, data, err := t.ws.ReadObject(w.hash, w.typ, sandboxgit.MaxMetaSize)
	if err != nil {
		return rawObject{}, nil, nil, fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	o := rawObject{hash: w.hash, typ: typ, data: data, path: w.path, packed: t.ws.Packed(w.hash)}
	var next []want
	meet := func(h plumbing.Hash, typ plumbing.ObjectType, path func() string) {
		if t.states.claim(h, t.have) {
			next = append(next, want{hash: h, typ: typ, path: path()})
		}
	}
	switch typ {
	case plumbing.CommitObject:
		c, err := sandboxgit.ParseCommit(data)
		if err != nil {
			return o, nil, nil, fmt.Errorf("commit %s: %w", w.hash, err)
		}
		meet(c.Tree, plumbing.TreeObject, func() string { return "/" })
		for _, p := range c.Parents {
			meet(p, plumbing.CommitObject, func() string { return "" })
		}
		return o, &c, next, nil
	case plumbing.TreeObject:
		// Every entry of the last version of this path was met already: only
		// what changed since needs meeting.
		v, err := sandboxgit.ParseTreeSince(data, t.lastVersion(w.path), func(name []byte, mode sandboxgit.Mode, h plumbing.Hash) error {
			if n := len(w.path) + len(name); n > sandboxgit.MaxPathLength {
				return &sandboxgit.LimitError{What: "a path", Size: int64(n), Limit: sandboxgit.MaxPathLength}
			}
			switch mode {
			case sandboxgit.ModeDir:
				meet(h, plumbing.TreeObject, func() string { return w.path + string(name) + "/" })
			case sandboxgit.ModeFile, sandboxgit.ModeExecutable, sandboxgit.ModeSymlink:
				meet(h, plumbing.BlobObject, func() string { return w.path + string(name) })
			}
			return nil
		})
		if err != nil {
			return o, nil, nil, sandboxgit.TreeError(w.hash, err)
		}
		t.setLastVersion(w.path, v)
		return o, nil, next, nil
	case plumbing.TagObject:
		mem := &plumbing.MemoryObject{}
		mem.SetType(typ)
		mem.Write(data)
		tag, err := object.DecodeTag(nil, mem)
		if err != nil {
			return o, nil, nil, hostile("tag %s is malformed: %v", w.hash, err)
		}
		meet(tag.Target, tag.TargetType, func() string { return "" })
		return o, nil, next, nil
	}
	return o, nil, nil, hostile("object %s has unexpected type %s", w.hash, typ)
}

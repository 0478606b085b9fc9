package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/packwrite"
	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// Limits of one sync that are not sandboxgit's (docs/sync.md, "Limits").
const (
	// maxObjects bounds the objects one sync brings.
	maxObjects = 10_000_000
	// keepMax bounds the loose commits, trees and tags kept in memory from
	// the walk to the pack; beyond it they are read again.
	keepMax = 256 << 20
)

// transfer collects what the host lacks of the workspace's branches and writes
// it as one pack. Commits, trees and tags are read whole, hashed against their
// names and checked (trees as git fsck does) by the walk (walk.go); blobs are
// only named by the trees and travel as stored. The pack is verified as a
// whole by the host's index-pack (install.go).
type transfer struct {
	ws   *sandboxgit.Repo
	have func(plumbing.Hash) bool // the host has it (and everything it reaches)

	states  objectStates
	small   []rawObject                          // commits, trees and tags, read and checked
	raw     map[plumbing.Hash]int                // index into small
	commits map[plumbing.Hash]*sandboxgit.Commit // the arriving commits, parsed
	blobs   []want                               // named by trees; read when the pack is written
	blobSet map[plumbing.Hash]bool               // the hashes of blobs, once the walk is done (split)
	kept    int64                                // bytes of small objects' data in memory
	// metaBytes is the size of the commits, trees and tags read: what
	// index-pack rebuilds and checks of them.
	metaBytes int64
	lastMu    sync.Mutex
	last      map[string]*sandboxgit.TreeVersion // the tree last walked at each path
}

type rawObject struct {
	hash   plumbing.Hash
	typ    plumbing.ObjectType
	data   []byte // kept for a loose object (to be compressed) while keepMax allows
	path   string // trees: where the tree sits ("/" for a root), to find a delta base
	packed bool   // stored in a workspace pack: it travels as stored
}

type want struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	path string
}

func newTransfer(ws *sandboxgit.Repo, have func(plumbing.Hash) bool) *transfer {
	t := &transfer{ws: ws, have: have, raw: map[plumbing.Hash]int{}, commits: map[plumbing.Hash]*sandboxgit.Commit{},
		last: map[string]*sandboxgit.TreeVersion{}}
	t.states.init()
	return t
}

// A part is what one pack of a sync holds (see syncer.storeObjects).
type part int

const (
	allObjects part = iota
	blobsOnly
	metaOnly // commits, trees and tags
)

// count is the number of objects of part.
func (t *transfer) count(p part) int {
	switch p {
	case blobsOnly:
		return len(t.blobs)
	case metaOnly:
		return len(t.small)
	}
	return len(t.small) + len(t.blobs)
}

// has reports whether h arrives with this transfer.
func (t *transfer) has(h plumbing.Hash) bool { return t.states.get(h) == arriving }

// split readies the transfer for two packs: blobs, and the rest.
func (t *transfer) split() {
	t.blobSet = make(map[plumbing.Hash]bool, len(t.blobs))
	for _, w := range t.blobs {
		t.blobSet[w.hash] = true
	}
}

// travelsIn reports whether h is in the pack of part p, so that a delta in that
// pack can name it as its base.
func (t *transfer) travelsIn(p part, h plumbing.Hash) bool {
	switch p {
	case blobsOnly:
		return t.blobSet[h]
	case metaOnly:
		return t.has(h) && !t.blobSet[h]
	}
	return t.has(h)
}

// hashes lists every object the pack of part p must hold.
func (t *transfer) hashes(p part) []plumbing.Hash {
	out := make([]plumbing.Hash, 0, t.count(p))
	if p != blobsOnly {
		for _, o := range t.small {
			out = append(out, o.hash)
		}
	}
	if p != metaOnly {
		for _, w := range t.blobs {
			out = append(out, w.hash)
		}
	}
	return out
}

// object returns an arriving commit, tree or tag: from memory, or read again
// (verified again) from the workspace.
func (t *transfer) object(h plumbing.Hash) (plumbing.EncodedObject, bool, error) {
	i, ok := t.raw[h]
	if !ok {
		return nil, false, nil
	}
	o := t.small[i]
	data := o.data
	if data == nil {
		var err error
		if _, data, err = t.ws.ReadObject(h, o.typ, sandboxgit.MaxMetaSize); err != nil {
			return nil, true, err
		}
	}
	mem := &plumbing.MemoryObject{}
	mem.SetType(o.typ)
	mem.Write(data)
	return mem, true, nil
}

// States of an object the walk met.
const (
	unseen   byte = iota
	arriving      // the host lacks it: it travels
	hostHas       // the host has it (and all it reaches)
)

// objectStates records what the walk met, in shards that the walk's workers
// lock independently: a tree of 10,000 entries is 10,000 lookups.
type objectStates struct {
	shards [256]struct {
		mu sync.Mutex
		m  map[plumbing.Hash]byte
	}
}

func (s *objectStates) init() {
	for i := range s.shards {
		s.shards[i].m = map[plumbing.Hash]byte{}
	}
}

func (s *objectStates) get(h plumbing.Hash) byte {
	sh := &s.shards[h[0]]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[h]
}

// claim records h the first time it is met, as arriving unless have says the
// host has it, and reports whether it arrives and was met now.
func (s *objectStates) claim(h plumbing.Hash, have func(plumbing.Hash) bool) bool {
	sh := &s.shards[h[0]]
	sh.mu.Lock()
	if _, ok := sh.m[h]; ok {
		sh.mu.Unlock()
		return false
	}
	sh.m[h] = arriving // another worker meeting h now waits for the answer below
	defer sh.mu.Unlock()
	if have(h) {
		sh.m[h] = hostHas
		return false
	}
	return true
}

// memoryMax is the largest blob read into memory (to be compressed in parallel
// with others, and to serve as a delta base); larger ones stream.
const memoryMax = 8 << 20

// writePack writes the collected objects of part pt to p. An object stored in a
// workspace pack is copied as it is stored, compressed, when that is a whole
// object or a delta whose base travels in the same pack or is on the host;
// anything else (loose objects, deltas against objects that do not travel or
// travel in the other pack) is inflated and compressed again.
func (t *transfer) writePack(ctx context.Context, p *packwrite.Writer, pt part) error {
	var deltas packwrite.Deltas
	for _, o := range t.small {
		if pt == blobsOnly {
			break
		}
		if o.packed {
			if ok, err := t.copyStored(p, pt, o.hash, o.typ); err != nil {
				return err
			} else if ok {
				continue
			}
		}
		data := o.data
		if data == nil {
			var err error
			if _, data, err = t.ws.ReadObject(o.hash, o.typ, sandboxgit.MaxMetaSize); err != nil {
				return fmt.Errorf("cannot read object %s: %w", o.hash, err)
			}
		}
		if err := p.Add(deltas.Entry(o.typ, data, o.path)); err != nil {
			return err
		}
	}
	for _, w := range t.blobs {
		if pt == metaOnly {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if ok, err := t.copyStored(p, pt, w.hash, plumbing.BlobObject); err != nil {
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

// copyStored copies h's stored entry into p, the pack of part pt, when it can
// travel as it is.
func (t *transfer) copyStored(p *packwrite.Writer, pt part, h plumbing.Hash, typ plumbing.ObjectType) (bool, error) {
	s, err := t.ws.Locate(h)
	if err != nil {
		return false, fmt.Errorf("cannot read object %s: %w", h, err)
	}
	switch {
	case s.Loose:
		return false, nil
	case s.Kind == plumbing.REFDeltaObject:
		if !t.travelsIn(pt, s.Base) && !t.have(s.Base) {
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

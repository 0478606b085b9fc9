package gitsync

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// transfer collects the objects reachable from some tips that a destination lacks,
// reading them from a source object store, and writes them as one pack. With
// verify set (the source is the hostile workspace) every object's content is
// hashed again and every tree entry checked before anything is installed.
type transfer struct {
	src    storer.EncodedObjectStorer
	have   func(plumbing.Hash) bool
	verify bool

	seen  map[plumbing.Hash]struct{}
	small []rawObject                // commits, trees and tags, already read and checked
	raw   map[plumbing.Hash]int      // index into small
	blobs []want                     // read only when the pack is written
	stats map[plumbing.Hash]blobStat // lines of each blob, learnt while it streamed by
}

type rawObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
	path string
}

type want struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	path string // trees: where the tree sits ("/" for a root), to find a delta base
	dir  string // blobs: the directory's path and the file's name, joined only
	name []byte // for blobs that travel
}

// where is the path of a tree or blob, "" when unknown.
func (w want) where() string {
	if w.name != nil {
		return w.dir + string(w.name)
	}
	return w.path
}

func newTransfer(src storer.EncodedObjectStorer, have func(plumbing.Hash) bool, verify bool) *transfer {
	return &transfer{src: src, have: have, verify: verify,
		seen: map[plumbing.Hash]struct{}{}, raw: map[plumbing.Hash]int{}, stats: map[plumbing.Hash]blobStat{}}
}

// count is the number of objects the pack will hold.
func (t *transfer) count() int { return len(t.small) + len(t.blobs) }

// has reports whether h arrives with this transfer (it was checked).
func (t *transfer) has(h plumbing.Hash) bool { _, ok := t.seen[h]; return ok }

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

// walk visits everything reachable from tips that the destination does not have.
// It stops at objects the destination has: a repository that has a commit has its
// whole history (shallow host repositories are not supported).
func (t *transfer) walk(ctx context.Context, tips []want) error {
	stack := append([]want(nil), tips...)
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		w := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := t.seen[w.hash]; ok || t.have(w.hash) {
			continue
		}
		t.seen[w.hash] = struct{}{}
		if w.typ == plumbing.BlobObject {
			t.blobs = append(t.blobs, w)
			continue
		}
		next, err := t.read(w)
		if err != nil {
			return err
		}
		stack = append(stack, next...)
	}
	return nil
}

// read loads a commit, tree or tag, checks it and returns what it points at.
func (t *transfer) read(w want) ([]want, error) {
	o, err := t.src.EncodedObject(plumbing.AnyObject, w.hash)
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	if w.typ != plumbing.AnyObject && o.Type() != w.typ {
		return nil, hostile("object %s is a %s, expected a %s", w.hash, o.Type(), w.typ)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	data, err := readExactly(r, o.Size())
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", w.hash, err)
	}
	if t.verify && plumbing.ComputeHash(o.Type(), data) != w.hash {
		return nil, hostile("object %s is corrupt: its content does not match its name", w.hash)
	}
	t.raw[w.hash] = len(t.small)
	t.small = append(t.small, rawObject{w.hash, o.Type(), data, w.path})
	mem, _ := t.memory(w.hash)
	switch o.Type() {
	case plumbing.CommitObject:
		c, err := object.DecodeCommit(nil, mem)
		if err != nil {
			return nil, hostile("commit %s is malformed: %v", w.hash, err)
		}
		next := []want{{hash: c.TreeHash, typ: plumbing.TreeObject, path: "/"}}
		for _, p := range c.ParentHashes {
			next = append(next, want{hash: p, typ: plumbing.CommitObject})
		}
		return next, nil
	case plumbing.TreeObject:
		if !t.verify {
			return parseTreeTrusted(w.hash, w.path, data)
		}
		return parseTree(w.hash, w.path, data)
	case plumbing.TagObject:
		tag, err := object.DecodeTag(nil, mem)
		if err != nil {
			return nil, hostile("tag %s is malformed: %v", w.hash, err)
		}
		return []want{{hash: tag.Target, typ: tag.TargetType}}, nil
	}
	return nil, hostile("object %s has unexpected type %s", w.hash, o.Type())
}

// packWriter writes a version 2 pack without deltas and remembers what the index needs.
type packWriter struct {
	w      *bufio.Writer
	sum    hash.Hash // over the whole pack, for its trailer
	crc    hash.Hash32
	off    int64
	idx    idxfile.Writer
	zw     *zlib.Writer
	header [16]byte
}

func (p *packWriter) Write(b []byte) (int, error) {
	p.sum.Write(b)
	p.crc.Write(b)
	p.off += int64(len(b))
	return p.w.Write(b)
}

// entryHeader encodes an entry's kind and size (of its inflated body).
func (p *packWriter) entryHeader(kind plumbing.ObjectType, size int64) []byte {
	n := 0
	c := byte(kind)<<4 | byte(size&0x0f)
	for s := size >> 4; s > 0; s >>= 7 {
		p.header[n] = c | 0x80
		n++
		c = byte(s & 0x7f)
	}
	p.header[n] = c
	return p.header[:n+1]
}

// object writes one object: a type and size header, then the zlib stream of data.
func (p *packWriter) object(h plumbing.Hash, typ plumbing.ObjectType, size int64, data io.Reader, verify bool) error {
	return p.entry(h, typ, typ, size, nil, data, verify)
}

// entry writes one pack entry: header (kind, size), extra header bytes, then the
// zlib stream of data, which with verify must hash to h as an object of type typ.
func (p *packWriter) entry(h plumbing.Hash, kind, typ plumbing.ObjectType, size int64, extra []byte, data io.Reader, verify bool) error {
	start := p.off
	p.crc.Reset()
	if _, err := p.Write(append(p.entryHeader(kind, size), extra...)); err != nil {
		return err
	}
	if p.zw == nil {
		p.zw, _ = zlib.NewWriterLevel(p, zlib.BestSpeed)
	} else {
		p.zw.Reset(p)
	}
	var hasher plumbing.Hasher
	var dst io.Writer = p.zw
	if verify {
		hasher = plumbing.NewHasher(typ, size)
		dst = io.MultiWriter(p.zw, hasher)
	}
	got, err := io.Copy(dst, data)
	if err != nil {
		return fmt.Errorf("cannot read object %s: %w", h, err)
	}
	if err := p.zw.Close(); err != nil {
		return err
	}
	if got != size || (verify && hasher.Sum() != h) {
		return hostile("object %s is corrupt: its content does not match its name", h)
	}
	p.idx.Add(h, uint64(start), p.crc.Sum32())
	return nil
}

// writePack writes everything the walk collected into objectsDir/pack. The pack
// and its index are written under temporary names and renamed into place, pack
// first: a kill at any moment leaves at most a stray temporary file, never a
// pack git would read half of. It returns the number of objects written.
func (t *transfer) writePack(ctx context.Context, objectsDir string) (int, error) {
	n := t.count()
	if n == 0 {
		return 0, nil
	}
	dir := filepath.Join(objectsDir, "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return 0, fmt.Errorf("cannot write a pack into %q: %w", dir, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	p := &packWriter{w: bufio.NewWriterSize(f, 1<<20), sum: sha1.New(), crc: crc32.NewIEEE()}
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(n))
	if _, err := p.Write(hdr[:]); err != nil {
		return 0, err
	}
	p.idx.OnHeader(uint32(n))
	// The last version of each tree and small file, as a delta base.
	last := map[string]*pending{}
	batch := make([]*pending, 0, len(t.small))
	for _, o := range t.small {
		batch = append(batch, deltaOrFull(last, o.hash, o.typ, o.data, o.path))
	}
	if err := p.writeBatch(batch); err != nil {
		return 0, err
	}
	batch = batch[:0]
	batchBytes := 0
	for _, w := range t.blobs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		x, err := t.readBlob(p, w, last, func() error { // a large blob streams: flush first
			err := p.writeBatch(batch)
			batch, batchBytes = batch[:0], 0
			return err
		})
		if err != nil {
			return 0, err
		}
		if x != nil {
			batch, batchBytes = append(batch, x), batchBytes+len(x.body)
			if len(batch) == 1024 || batchBytes > batchMax {
				if err := p.writeBatch(batch); err != nil {
					return 0, err
				}
				batch, batchBytes = batch[:0], 0
			}
		}
	}
	if err := p.writeBatch(batch); err != nil {
		return 0, err
	}
	var trailer plumbing.Hash
	copy(trailer[:], p.sum.Sum(nil))
	if _, err := p.w.Write(trailer[:]); err != nil {
		return 0, err
	}
	if err := p.w.Flush(); err != nil {
		return 0, err
	}
	if err := p.idx.OnFooter(trailer); err != nil {
		return 0, err
	}
	return n, installPack(f, dir, trailer, &p.idx)
}

// maxSmallObject bounds the commits, trees and tags read into memory: a larger
// size claim comes from a crafted repository.
const maxSmallObject = 256 << 20

// readExactly reads an object whose header claims size bytes, in one allocation,
// and fails unless exactly that many arrive.
func readExactly(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > maxSmallObject {
		return nil, hostile("object claims a size of %d bytes", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, hostile("object is shorter than its header says: %v", err)
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n != 0 {
		return nil, hostile("object is longer than its header says")
	}
	return data, nil
}

// memoryMax is the largest blob compressed in memory, in parallel with others;
// larger ones stream. batchMax bounds the memory of one batch.
const (
	memoryMax = 8 << 20
	batchMax  = 64 << 20
)

// deltaMax is the largest file kept in memory to serve as a delta base.
const deltaMax = 256 << 10

// readBlob reads one blob for the pack. A small one comes back as a pending entry,
// a delta against the previous version of its path when that saves space; a large
// one is streamed into the pack at once, after flush.
func (t *transfer) readBlob(p *packWriter, w want, last map[string]*pending, flush func() error) (*pending, error) {
	h := w.hash
	o, err := t.src.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", h, err)
	}
	if o.Type() != plumbing.BlobObject {
		return nil, hostile("object %s is a %s, expected a blob", h, o.Type())
	}
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", h, err)
	}
	defer r.Close()
	var lc lineCounter
	path := w.where()
	if o.Size() > memoryMax {
		if err := flush(); err != nil {
			return nil, err
		}
		if err := p.object(h, plumbing.BlobObject, o.Size(), io.TeeReader(r, &lc), t.verify); err != nil {
			return nil, err
		}
		t.stats[h] = lc.stat()
		return nil, nil
	}
	data, err := readExactly(r, o.Size())
	if err != nil {
		return nil, fmt.Errorf("cannot read object %s: %w", h, err)
	}
	if t.verify && plumbing.ComputeHash(plumbing.BlobObject, data) != h {
		return nil, hostile("object %s is corrupt: its content does not match its name", h)
	}
	lc.Write(data)
	t.stats[h] = lc.stat()
	if len(data) > deltaMax {
		path = "" // too large to keep as the next version's base
	}
	return deltaOrFull(last, h, plumbing.BlobObject, data, path), nil
}

// pending is a pack entry whose body is compressed in parallel with others
// before the entries are written in order.
type pending struct {
	hash plumbing.Hash
	kind plumbing.ObjectType // the object's type, or OFSDeltaObject
	data []byte              // the object's content: a base for the next version
	body []byte              // what the entry stores: data, or a delta
	base *pending            // OFS_DELTA: the entry it applies to
	off  int64               // set once written
	z    []byte              // body compressed
}

// deltaOrFull makes the entry for one object, a delta against the last version of
// the same path (trees and small files) when that saves at least half.
func deltaOrFull(last map[string]*pending, h plumbing.Hash, typ plumbing.ObjectType, data []byte, path string) *pending {
	x := &pending{hash: h, kind: typ, data: data, body: data}
	if path == "" || (typ != plumbing.TreeObject && typ != plumbing.BlobObject) {
		return x
	}
	if b, ok := last[path]; ok {
		if d := makeDelta(b.data, data); d != nil {
			x.kind, x.body, x.base = plumbing.OFSDeltaObject, d, b
		}
	}
	last[path] = x
	return x
}

// writeBatch compresses the entries' bodies on every CPU, then writes them in order.
func (p *packWriter) writeBatch(batch []*pending) error {
	work := make(chan *pending)
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zw, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed)
			for x := range work {
				buf := bytes.NewBuffer(make([]byte, 0, len(x.body)/2+64))
				zw.Reset(buf)
				zw.Write(x.body)
				zw.Close()
				x.z = buf.Bytes()
			}
		}()
	}
	for _, x := range batch {
		work <- x
	}
	close(work)
	wg.Wait()
	for _, x := range batch {
		x.off = p.off
		var extra []byte
		if x.base != nil {
			extra = ofsDeltaOffset(p.off - x.base.off)
		}
		p.crc.Reset()
		if _, err := p.Write(append(p.entryHeader(x.kind, int64(len(x.body))), extra...)); err != nil {
			return err
		}
		if _, err := p.Write(x.z); err != nil {
			return err
		}
		p.idx.Add(x.hash, uint64(x.off), p.crc.Sum32())
		x.z, x.body = nil, nil
	}
	return nil
}

// verifyBlobs hashes every blob of the walk without writing it: a dry run checks
// exactly what a real sync would.
func (t *transfer) verifyBlobs(ctx context.Context) error {
	for _, w := range t.blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := w.hash
		o, err := t.src.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return fmt.Errorf("cannot read object %s: %w", h, err)
		}
		if o.Type() != plumbing.BlobObject {
			return hostile("object %s is a %s, expected a blob", h, o.Type())
		}
		r, err := o.Reader()
		if err != nil {
			return fmt.Errorf("cannot read object %s: %w", h, err)
		}
		hasher := plumbing.NewHasher(plumbing.BlobObject, o.Size())
		var lc lineCounter
		n, err := io.Copy(io.MultiWriter(hasher, &lc), r)
		r.Close()
		t.stats[h] = lc.stat()
		if err != nil {
			return fmt.Errorf("cannot read object %s: %w", h, err)
		}
		if n != o.Size() || hasher.Sum() != h {
			return hostile("object %s is corrupt: its content does not match its name", h)
		}
	}
	return nil
}

func installPack(f *os.File, dir string, sum plumbing.Hash, w *idxfile.Writer) error {
	base := filepath.Join(dir, "pack-"+sum.String())
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o444); err != nil {
		return err
	}
	if _, err := os.Stat(base + ".idx"); err == nil {
		return nil // the same pack is already installed
	}
	if err := os.Rename(f.Name(), base+".pack"); err != nil {
		return err
	}
	idx, err := w.Index()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "tmp_idx_")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	if _, err := idxfile.NewEncoder(bw).Encode(idx); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(bw.Flush(), tmp.Chmod(0o444), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), base+".idx")
}

// parseTreeTrusted lists a trusted tree's entries (Clone: the host's own
// repository may hold names the checks refuse, which git itself accepted).
func parseTreeTrusted(h plumbing.Hash, dir string, data []byte) ([]want, error) {
	var next []want
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		nul := bytes.IndexByte(data, 0)
		if sp < 0 || nul < sp || len(data) < nul+21 {
			return nil, fmt.Errorf("tree %s is malformed", h)
		}
		var target plumbing.Hash
		copy(target[:], data[nul+1:nul+21])
		name := string(data[sp+1 : nul])
		switch string(data[:sp]) {
		case "40000":
			next = append(next, want{hash: target, typ: plumbing.TreeObject, path: dir + name + "/"})
		case "160000":
		default:
			next = append(next, want{hash: target, typ: plumbing.BlobObject, path: dir + name})
		}
		data = data[nul+21:]
	}
	return next, nil
}

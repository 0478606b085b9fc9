package sandboxgit

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/untrusted"
)

// ErrNotFound means the repository does not have the object.
var ErrNotFound = errors.New("object not found")

// Stored says how an object is stored in a pack, so that its compressed bytes
// can be copied into another pack as they are (Loose: it is not in a pack).
type Stored struct {
	Loose bool
	Kind  plumbing.ObjectType // the object's type, or REFDeltaObject for a delta
	Size  int64               // inflated size of what is stored: the object, or the delta
	Base  plumbing.Hash       // a delta's base (an OFS_DELTA's is looked up by offset)
	pack  *Pack
	off   int64 // the entry
	from  int64 // its zlib stream, up to the next entry
	to    int64
}

// LoadPacks opens every pack now rather than at the first read: after it, the
// repository's reads are safe for concurrent use.
func (r *Repo) LoadPacks() error { return r.loadPacks() }

// loadPacks opens objects/pack/pack-<name>.idx and .pack, checking each index.
func (r *Repo) loadPacks() error {
	if !r.loaded {
		r.loaded = true
		r.loadErr = r.openPacks()
	}
	return r.loadErr
}

func (r *Repo) openPacks() error {
	d, err := untrusted.OpenDir(r.root, "objects/pack")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return hostile("cannot open objects/pack: %v", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return hostile("cannot list objects/pack: %v", err)
	}
	for _, n := range names {
		base, ok := strings.CutSuffix(n, ".idx")
		if !ok || !strings.HasPrefix(base, "pack-") {
			continue
		}
		if len(r.packs) == MaxPacks {
			return tooLarge("the number of packs", MaxPacks+1, MaxPacks)
		}
		p, err := r.openPack(base)
		if err != nil {
			return err
		}
		r.packs = append(r.packs, p)
	}
	return nil
}

func (r *Repo) openPack(base string) (*Pack, error) {
	f, err := untrusted.Open(r.root, path.Join("objects/pack", base+".pack"))
	if err != nil {
		return nil, hostile("%s.idx has no readable pack: %v", base, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, hostile("%s.pack is not a regular file", base)
	}
	var hdr [12]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || !bytes.Equal(hdr[:4], []byte("PACK")) || (hdr[7] != 2 && hdr[7] != 3) {
		f.Close()
		return nil, hostile("%s.pack is not a version 2 pack", base)
	}
	data, err := r.readSmall(path.Join("objects/pack", base+".idx"), MaxIndexSize)
	if err != nil {
		f.Close()
		return nil, err
	}
	idx, err := ParseIndex(data, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s.idx: %w", base, err)
	}
	return &Pack{name: base, f: f, size: fi.Size(), idx: idx}, nil
}

// find returns the pack and offset of h, or a nil pack when it is not packed.
func (r *Repo) find(h plumbing.Hash) (*Pack, int64, error) {
	if err := r.loadPacks(); err != nil {
		return nil, 0, err
	}
	for _, p := range r.packs {
		if i := p.idx.Find(h); i >= 0 {
			return p, p.idx.Offset(i), nil
		}
	}
	return nil, 0, nil
}

// metaLimit is how large an object of type t may be.
func metaLimit(t plumbing.ObjectType) int64 {
	if t == plumbing.BlobObject {
		return MaxBlobSize
	}
	return MaxMetaSize
}

// ReadObject reads object h whole, at most limit bytes, and checks that it has
// type want (unless AnyObject) and that its content hashes to its name.
func (r *Repo) ReadObject(h plumbing.Hash, want plumbing.ObjectType, limit int64) (plumbing.ObjectType, []byte, error) {
	typ, data, err := r.readObject(h, limit)
	if err != nil {
		return 0, nil, err
	}
	if want != plumbing.AnyObject && typ != want {
		return 0, nil, hostile("object %s is a %s, expected a %s", h, typ, want)
	}
	if objectHash(typ, data) != h {
		return 0, nil, hostile("object %s is corrupt: its content does not match its name", h)
	}
	return typ, data, nil
}

// objectHash is an object's name. It is plain SHA-1, twice as fast as go-git's
// collision-detecting one: what keystone reads is checked again by the host's
// git, whose SHA-1 detects collision attacks, and a collision is the only way
// two different contents could both match a name.
func objectHash(typ plumbing.ObjectType, data []byte) plumbing.Hash {
	h := sha1.New()
	h.Write(typ.Bytes())
	h.Write([]byte{' '})
	h.Write(strconv.AppendInt(nil, int64(len(data)), 10))
	h.Write([]byte{0})
	h.Write(data)
	var sum plumbing.Hash
	h.Sum(sum[:0])
	return sum
}

// Packed reports whether h is stored in a pack (after LoadPacks).
func (r *Repo) Packed(h plumbing.Hash) bool {
	p, _, _ := r.find(h)
	return p != nil
}

func (r *Repo) readObject(h plumbing.Hash, limit int64) (plumbing.ObjectType, []byte, error) {
	p, off, err := r.find(h)
	if err != nil {
		return 0, nil, err
	}
	if p != nil {
		return r.readPacked(p, off, limit, 0)
	}
	typ, size, rc, err := r.openLoose(h)
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	if size > limit {
		return 0, nil, tooLarge("object "+h.String(), size, limit)
	}
	data, err := readAll(rc, size)
	return typ, data, err
}

// OpenObject streams object h: its type, its size, and a reader of exactly that
// many bytes, which fails at the end unless the stored stream ends there too.
// The content is not hashed: a caller that does not hash it must have it
// verified (the host's index-pack does). A delta is rebuilt in memory, up to
// MaxResolveSize.
func (r *Repo) OpenObject(h plumbing.Hash) (plumbing.ObjectType, int64, io.ReadCloser, error) {
	p, off, err := r.find(h)
	if err != nil {
		return 0, 0, nil, err
	}
	if p == nil {
		return r.openLoose(h)
	}
	e, err := p.header(off)
	if err != nil {
		return 0, 0, nil, err
	}
	if e.kind == plumbing.OFSDeltaObject || e.kind == plumbing.REFDeltaObject {
		typ, data, err := r.readPacked(p, off, MaxResolveSize, 0)
		if err != nil {
			return 0, 0, nil, err
		}
		return typ, int64(len(data)), nopCloser(data), nil
	}
	if lim := metaLimit(e.kind); e.size > lim {
		return 0, 0, nil, tooLarge("object "+h.String(), e.size, lim)
	}
	rc, err := p.inflate(e)
	return e.kind, e.size, rc, err
}

// readPacked rebuilds the object at off of p, at most limit bytes; bases of
// deltas come from the cache or are rebuilt in turn, up to MaxDeltaDepth deep.
func (r *Repo) readPacked(p *Pack, off, limit int64, depth int) (plumbing.ObjectType, []byte, error) {
	if typ, data, ok := r.cache.get(p, off); ok {
		if int64(len(data)) > limit {
			return 0, nil, tooLarge(fmt.Sprintf("the object at %d of %s", off, p.name), int64(len(data)), limit)
		}
		return typ, data, nil
	}
	if depth > MaxDeltaDepth {
		return 0, nil, hostile("%s has a delta chain deeper than %d at %d", p.name, MaxDeltaDepth, off)
	}
	e, err := p.header(off)
	if err != nil {
		return 0, nil, err
	}
	var baseOff int64
	switch e.kind {
	case plumbing.OFSDeltaObject:
		baseOff = e.base
	case plumbing.REFDeltaObject:
		i := p.idx.Find(e.ref) // git looks for a delta's base in its own pack only
		if i < 0 {
			return 0, nil, hostile("%s has a delta at %d whose base %s is not in it", p.name, off, e.ref)
		}
		baseOff = p.idx.Offset(i)
	default:
		data, err := p.readEntry(e, limit)
		if err != nil {
			return 0, nil, err
		}
		if depth > 0 {
			r.cache.put(p, off, e.kind, data)
		}
		return e.kind, data, nil
	}
	typ, base, err := r.readPacked(p, baseOff, MaxResolveSize, depth+1)
	if err != nil {
		return 0, nil, err
	}
	delta, err := p.readEntry(e, limit+limit/64+64) // inserts cost a byte per 127
	if err != nil {
		return 0, nil, err
	}
	data, err := PatchDelta(base, delta, limit)
	if err != nil {
		return 0, nil, fmt.Errorf("%s at %d: %w", p.name, off, err)
	}
	r.cache.put(p, off, typ, data)
	return typ, data, nil
}

// openLoose opens objects/xx/yyyy…: a zlib stream of "<type> <size>\x00" and
// the content.
func (r *Repo) openLoose(h plumbing.Hash) (plumbing.ObjectType, int64, io.ReadCloser, error) {
	hex := h.String()
	f, err := untrusted.Open(r.root, path.Join("objects", hex[:2], hex[2:]))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil, fmt.Errorf("%w: %s", ErrNotFound, h)
	}
	if err != nil {
		return 0, 0, nil, hostile("cannot open object %s: %v", h, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > MaxBlobSize+MaxBlobSize/64 {
		f.Close()
		return 0, 0, nil, hostile("object %s is not a regular file of a sensible size", h)
	}
	typ, size, rc, err := parseLoose(f, "object "+h.String())
	if err != nil {
		f.Close()
		return 0, 0, nil, err
	}
	return typ, size, rc, nil
}

// parseLoose reads a loose object's header from its compressed bytes and
// returns a reader of its content (closing it closes f).
func parseLoose(f io.ReadCloser, what string) (plumbing.ObjectType, int64, io.ReadCloser, error) {
	z, err := newInflater(f)
	if err != nil {
		return 0, 0, nil, hostile("%s is corrupt: %v", what, err)
	}
	var hdr []byte
	var c [1]byte
	for len(hdr) < 32 {
		if _, err := io.ReadFull(z, c[:]); err != nil {
			z.Close()
			return 0, 0, nil, hostile("%s is corrupt: %v", what, err)
		}
		if c[0] == 0 {
			break
		}
		hdr = append(hdr, c[0])
	}
	tname, sizeStr, ok := strings.Cut(string(hdr), " ")
	typ, terr := plumbing.ParseObjectType(tname)
	size, serr := strconv.ParseInt(sizeStr, 10, 64)
	if !ok || len(hdr) == 32 || terr != nil || serr != nil || size < 0 || !typ.Valid() ||
		typ == plumbing.OFSDeltaObject || typ == plumbing.REFDeltaObject {
		z.Close()
		return 0, 0, nil, hostile("%s has a malformed header", what)
	}
	if lim := metaLimit(typ); size > lim {
		z.Close()
		return 0, 0, nil, tooLarge(what, size, lim)
	}
	return typ, size, exactReader(looseReader{z, f}, size, what), nil
}

// looseReader reads a loose object's content; Close closes the file too.
type looseReader struct {
	z *inflater
	f io.Closer
}

func (r looseReader) Read(p []byte) (int, error) { return r.z.Read(p) }

func (r looseReader) Close() error {
	r.z.Close()
	return r.f.Close()
}

// Locate says how h is stored, for CopyStored.
func (r *Repo) Locate(h plumbing.Hash) (Stored, error) {
	p, off, err := r.find(h)
	if err != nil || p == nil {
		return Stored{Loose: true}, err
	}
	e, err := p.header(off)
	if err != nil {
		return Stored{}, err
	}
	s := Stored{Kind: e.kind, Size: e.size, pack: p, off: off, from: e.data, to: p.entryEnd(off)}
	switch e.kind {
	case plumbing.OFSDeltaObject:
		base, ok := p.hashAt(e.base)
		if !ok {
			return Stored{}, hostile("%s has a delta at %d whose base is no entry", p.name, off)
		}
		s.Kind, s.Base = plumbing.REFDeltaObject, base
	case plumbing.REFDeltaObject:
		s.Base = e.ref
	}
	if s.to < s.from {
		return Stored{}, hostile("%s has overlapping entries at %d", p.name, off)
	}
	return s, nil
}

// ObjectSize is the size of the object s stores: a delta's declared target
// size, read from the start of the delta.
func (r *Repo) ObjectSize(s Stored) (int64, error) {
	if s.Kind != plumbing.REFDeltaObject {
		return s.Size, nil
	}
	e, err := s.pack.header(s.off)
	if err != nil {
		return 0, err
	}
	return s.pack.deltaTarget(e)
}

// CopyStored copies the compressed bytes of a packed object (after its entry
// header) to w. They are not checked here: the pack they go into is.
func (r *Repo) CopyStored(w io.Writer, s Stored) error {
	if s.pack == nil {
		return fmt.Errorf("a loose object has no stored pack entry")
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(w, io.NewSectionReader(s.pack.f, s.from, s.to-s.from), *buf)
	return err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

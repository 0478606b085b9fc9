// Package packwrite writes git packs quickly: entries copied as they are from
// another pack, entries compressed on every CPU, and deltas between versions of
// the same path. It is the speed half of gitsync and trusts its input: what it
// writes is verified by the host's own `git index-pack --strict` before any ref
// can point at it (gitsync/install.go), so a mistake here fails a sync instead of
// corrupting a repository.
package packwrite

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	// the same format as compress/zlib with less CPU at BestSpeed, and
	// compression is the largest part of a loose sync's own work (bench/sync:
	// 1000 loose commits, 0.92-0.96x git's CPU, from 1.04-1.07x)
	"github.com/klauspost/compress/zlib"
)

// Writer writes a version 2 pack: a header with the number of entries, the
// entries, and a trailer holding the SHA-1 of all that precedes it.
type Writer struct {
	w       *bufio.Writer
	sum     hash.Hash
	off     int64
	count   uint32
	written uint32
	queue   []*Entry
	queued  int // bytes of the queue's bodies
	zw      *zlib.Writer
	hdr     [32]byte
}

// Queue limits: entries are compressed in batches, on every CPU.
const (
	batchEntries = 1024
	batchBytes   = 64 << 20
)

// New writes the header of a pack of count entries to w.
func New(w io.Writer, count uint32) (*Writer, error) {
	p := &Writer{w: bufio.NewWriterSize(w, 1<<20), sum: sha1.New(), count: count}
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], count)
	_, err := p.Write(hdr[:])
	return p, err
}

// Write adds raw bytes to the pack and its checksum.
func (p *Writer) Write(b []byte) (int, error) {
	p.sum.Write(b)
	p.off += int64(len(b))
	return p.w.Write(b)
}

// entryHeader writes an entry's kind and size (of its inflated body), then extra
// (a delta's base), and counts the entry.
func (p *Writer) entryHeader(kind plumbing.ObjectType, size int64, extra []byte) error {
	if p.written == p.count {
		return fmt.Errorf("pack declared %d entries; one more was written", p.count)
	}
	p.written++
	n := 0
	c := byte(kind)<<4 | byte(size&0x0f)
	for s := size >> 4; s > 0; s >>= 7 {
		p.hdr[n] = c | 0x80
		n++
		c = byte(s & 0x7f)
	}
	p.hdr[n] = c
	if _, err := p.Write(p.hdr[:n+1]); err != nil {
		return err
	}
	_, err := p.Write(extra)
	return err
}

// Raw writes an entry whose compressed bytes copy writes as they are: kind is
// an object type, or REFDeltaObject with the base's name; size is what the
// bytes inflate to.
func (p *Writer) Raw(kind plumbing.ObjectType, size int64, base plumbing.Hash, copy func(io.Writer) error) error {
	var extra []byte
	if kind == plumbing.REFDeltaObject {
		extra = base[:]
	}
	if err := p.entryHeader(kind, size, extra); err != nil {
		return err
	}
	return copy(p)
}

// Stream writes an object of size bytes read from r, compressing as it goes:
// for objects too large to hold in memory.
func (p *Writer) Stream(typ plumbing.ObjectType, size int64, r io.Reader) error {
	if err := p.entryHeader(typ, size, nil); err != nil {
		return err
	}
	if p.zw == nil {
		p.zw, _ = zlib.NewWriterLevel(p, zlib.BestSpeed)
	} else {
		p.zw.Reset(p)
	}
	n, err := io.Copy(p.zw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("object stream gave %d bytes, not %d", n, size)
	}
	return p.zw.Close()
}

// Add queues an entry made in memory (Full, or Deltas.Entry); queued entries are
// compressed in parallel and written in order when the queue fills, before any
// entry that is not queued, and at Close.
func (p *Writer) Add(e *Entry) error {
	p.queue = append(p.queue, e)
	p.queued += len(e.body)
	if len(p.queue) >= batchEntries || p.queued >= batchBytes {
		return p.Flush()
	}
	return nil
}

// Flush compresses the queued entries on every CPU, then writes them in order.
func (p *Writer) Flush() error {
	compressAll(p.queue)
	for _, e := range p.queue {
		e.off = p.off
		var extra []byte
		kind := e.Type
		if e.base != nil {
			kind, extra = plumbing.OFSDeltaObject, ofsDeltaOffset(p.off-e.base.off)
		}
		if err := p.entryHeader(kind, int64(len(e.body)), extra); err != nil {
			return err
		}
		if _, err := p.Write(e.z); err != nil {
			return err
		}
		// Written: only data stays, as the next version's base (Deltas
		// keeps the newest per path; dropping base ends the chain).
		e.z, e.body, e.base = nil, nil, nil
	}
	p.queue, p.queued = p.queue[:0], 0
	return nil
}

func compressAll(queue []*Entry) {
	work := make(chan *Entry)
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zw, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed)
			for e := range work {
				buf := bytes.NewBuffer(make([]byte, 0, len(e.body)/2+64))
				zw.Reset(buf)
				zw.Write(e.body) // a bytes.Buffer does not fail
				zw.Close()
				e.z = buf.Bytes()
			}
		}()
	}
	for _, e := range queue {
		work <- e
	}
	close(work)
	wg.Wait()
}

// Close writes what is queued and the trailer, and returns the pack's checksum.
// It fails unless every declared entry was written.
func (p *Writer) Close() (plumbing.Hash, error) {
	var sum plumbing.Hash
	if err := p.Flush(); err != nil {
		return sum, err
	}
	if p.written != p.count {
		return sum, fmt.Errorf("pack declared %d entries, %d were written", p.count, p.written)
	}
	copy(sum[:], p.sum.Sum(nil))
	if _, err := p.w.Write(sum[:]); err != nil {
		return sum, err
	}
	return sum, p.w.Flush()
}

// ofsDeltaOffset encodes the distance back to a delta's base as git's pack
// format wants it (a big-endian varint with one added per continued byte).
func ofsDeltaOffset(dist int64) []byte {
	var buf [16]byte
	i := len(buf) - 1
	buf[i] = byte(dist & 0x7f)
	for dist >>= 7; dist > 0; dist >>= 7 {
		dist--
		i--
		buf[i] = 0x80 | byte(dist&0x7f)
	}
	return buf[i:]
}

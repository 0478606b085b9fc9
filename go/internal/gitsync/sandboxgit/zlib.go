package sandboxgit

import (
	"bufio"
	"compress/zlib"
	"io"
	"sync"
)

// Inflating allocates a window and tables per stream; a sync inflates every
// commit and tree it brings, so readers and their input buffers are reused.
var (
	zlibPool sync.Pool // of io.ReadCloser (zlib readers)
	bufPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
)

// inflater reads the zlib stream in r; Close returns its parts to the pools.
type inflater struct {
	z  io.ReadCloser
	br *bufio.Reader
}

func newInflater(r io.Reader) (*inflater, error) {
	br := bufPool.Get().(*bufio.Reader)
	br.Reset(r)
	if z, ok := zlibPool.Get().(io.ReadCloser); ok {
		if err := z.(zlib.Resetter).Reset(br, nil); err != nil {
			bufPool.Put(br)
			return nil, err
		}
		return &inflater{z, br}, nil
	}
	z, err := zlib.NewReader(br)
	if err != nil {
		bufPool.Put(br)
		return nil, err
	}
	return &inflater{z, br}, nil
}

func (f *inflater) Read(p []byte) (int, error) { return f.z.Read(p) }

func (f *inflater) Close() error {
	if f.z != nil {
		zlibPool.Put(f.z)
		f.br.Reset(nil)
		bufPool.Put(f.br)
		f.z, f.br = nil, nil
	}
	return nil
}

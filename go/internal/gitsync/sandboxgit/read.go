package sandboxgit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// exactReader yields exactly size bytes of r and then checks that r ends there
// (reading to io.EOF is also what makes zlib check its checksum).
func exactReader(r io.ReadCloser, size int64, what string) io.ReadCloser {
	return &exact{r: r, left: size, what: what}
}

type exact struct {
	r    io.ReadCloser
	left int64
	what string
	done bool
}

func (e *exact) Read(p []byte) (int, error) {
	if e.left == 0 {
		if !e.done {
			e.done = true
			var one [1]byte
			n, err := io.ReadFull(e.r, one[:])
			if n != 0 {
				return 0, hostile("%s is longer than its header says", e.what)
			}
			if !errors.Is(err, io.EOF) {
				return 0, hostile("%s is corrupt: %v", e.what, err)
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			return n, hostile("%s is shorter than its header says", e.what)
		}
		err = nil
	} else if err != nil {
		err = hostile("%s is corrupt: %v", e.what, err)
	}
	return n, err
}

func (e *exact) Close() error { return e.r.Close() }

// readAll reads r, an exactReader of size bytes, into one allocation of size.
func readAll(r io.Reader, size int64) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var one [1]byte
	if _, err := r.Read(one[:]); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("object is longer than its header says")
		}
		return nil, err
	}
	return b, nil
}

// nopCloser makes bytes a ReadCloser.
func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

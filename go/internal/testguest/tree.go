package testguest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
)

// node is one entry of the guest's root file system.
type node struct {
	kind   byte // 'd' directory, 'f' file, 'l' symlink, 'c' character device
	perm   fs.FileMode
	src    string // host file with the contents of 'f' when data is nil
	data   []byte
	target string       // symlink target
	comp   *compression // src is compressed with this (kernel modules)
	major  uint32
	minor  uint32
}

// tree is the guest's root file system, keyed by path without a leading slash.
// Nothing is read from the host until it is hashed or written, so planning a
// tree is cheap and a cache hit reads each input file once.
type tree map[string]*node

func (t tree) mkdirAll(dir string) {
	for dir != "." && dir != "/" && dir != "" {
		if _, ok := t[dir]; ok {
			return
		}
		t[dir] = &node{kind: 'd', perm: 0o755}
		dir = path.Dir(dir)
	}
}

// add puts n at p, creating missing parent directories.
func (t tree) add(p string, n *node) {
	t.mkdirAll(path.Dir(p))
	t[p] = n
}

func (t tree) dir(p string, perm fs.FileMode) { t.add(p, &node{kind: 'd', perm: perm}) }

func (t tree) copy(p, src string, perm fs.FileMode) { t.add(p, &node{kind: 'f', perm: perm, src: src}) }

func (t tree) file(p string, perm fs.FileMode, data []byte) {
	t.add(p, &node{kind: 'f', perm: perm, data: data})
}

func (t tree) symlink(p, target string) { t.add(p, &node{kind: 'l', target: target}) }

// sorted returns the paths in archive order: a parent sorts before its children.
func (t tree) sorted() []string {
	ps := make([]string, 0, len(t))
	for p := range t {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// hash writes a digest of every path, mode and content into h.
func (t tree) hash(h io.Writer) error {
	for _, p := range t.sorted() {
		n := t[p]
		fmt.Fprintf(h, "%c %s %o %d:%d %q\n", n.kind, p, n.perm, n.major, n.minor, n.target)
		switch {
		case n.data != nil:
			fmt.Fprintf(h, "data %x\n", sha256.Sum256(n.data))
		case n.src != "":
			sum, err := fileSum(n.src)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "src %s\n", sum)
		}
	}
	return nil
}

func fileSum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("failed to read %q: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeCPIO writes the tree as a newc archive, every file owned by root.
func (t tree) writeCPIO(ctx context.Context, w io.Writer) error {
	cw := newCPIOWriter(w)
	for _, p := range t.sorted() {
		n := t[p]
		var err error
		switch n.kind {
		case 'd':
			err = cw.Dir(p, n.perm)
		case 'l':
			err = cw.Symlink(p, n.target)
		case 'c':
			err = cw.CharDev(p, n.perm, n.major, n.minor)
		case 'f':
			data := n.data
			if data == nil {
				if data, err = os.ReadFile(n.src); err != nil {
					return err
				}
				if n.comp != nil {
					if data, err = decompress(ctx, *n.comp, data); err != nil {
						return err
					}
				}
			}
			err = cw.File(p, n.perm, data)
		}
		if err != nil {
			return fmt.Errorf("failed to add %q to the initramfs: %w", p, err)
		}
	}
	return cw.Close()
}

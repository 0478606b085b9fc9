package gitsync

import (
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// objectSet answers "does this repository have object h" for the host's object
// directory: pack indexes are read once (with the same bounded parser as the
// workspace's), and each loose-object directory is listed once, when first
// needed. It is safe for concurrent use.
type objectSet struct {
	dir   string
	idxs  []*sandboxgit.Index
	mu    sync.Mutex
	loose map[string]map[string]bool // "ab" → names in objects/ab
}

func newObjectSet(objectsDir string) (*objectSet, error) {
	s := &objectSet{dir: objectsDir, loose: map[string]map[string]bool{}}
	paths, err := filepath.Glob(filepath.Join(objectsDir, "pack", "pack-*.idx"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		idx, err := readIndex(strings.TrimSuffix(p, ".idx"))
		if os.IsNotExist(err) {
			continue // a pack removed by a concurrent gc
		}
		if err != nil {
			return nil, err
		}
		s.idxs = append(s.idxs, idx)
	}
	return s, nil
}

func (s *objectSet) has(h plumbing.Hash) bool {
	for _, idx := range s.idxs {
		if idx.Contains(h) {
			return true
		}
	}
	hex := h.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	names, ok := s.loose[hex[:2]]
	if !ok {
		names = map[string]bool{}
		if d, err := os.Open(filepath.Join(s.dir, hex[:2])); err == nil {
			list, _ := d.Readdirnames(-1)
			d.Close()
			for _, n := range list {
				names[n] = true
			}
		}
		s.loose[hex[:2]] = names
	}
	return names[hex[2:]]
}

package gitsync

import (
	"container/heap"
	"context"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// union reads objects from the host first and, for objects that arrive with the
// current transfer, from the workspace: commits and trees were checked by the walk;
// blobs are only counted for the summary and are hashed before anything is
// installed or reported.
type union struct {
	storer.EncodedObjectStorer // the host
	ws                         storer.EncodedObjectStorer
	incoming                   *transfer
}

func (u *union) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if u.incoming != nil && u.incoming.has(h) {
		if o, ok := u.incoming.memory(h); ok {
			if t != plumbing.AnyObject && o.Type() != t {
				return nil, plumbing.ErrObjectNotFound
			}
			return o, nil
		}
		return u.ws.EncodedObject(t, h)
	}
	return u.EncodedObjectStorer.EncodedObject(t, h)
}

func (u *union) HasEncodedObject(h plumbing.Hash) error {
	if u.incoming != nil && u.incoming.has(h) {
		return nil
	}
	return u.EncodedObjectStorer.HasEncodedObject(h)
}

func (u *union) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	o, err := u.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, err
	}
	return o.Size(), nil
}

// Commit is one incoming commit.
type Commit struct {
	Hash    string `json:"hash"`
	Subject string `json:"subject"`
}

const (
	fromA = 1 << iota // reachable from the excluded side
	fromB             // reachable from the wanted side
)

type walkItem struct {
	c     *object.Commit
	flags int
}

type commitQueue []*walkItem

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	return q[i].c.Committer.When.After(q[j].c.Committer.When)
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*walkItem)) }
func (q *commitQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// rangeCommits lists the commits reachable from b but not from a (`git rev-list
// a..b`), newest first. It walks both sides by commit date and stops once only
// commits reachable from a remain queued, a few extra steps later for clock skew
// (git's "slop"). An empty result is always exact; with skewed clocks a commit
// reachable from a may, rarely, be listed too.
func rangeCommits(ctx context.Context, s storer.EncodedObjectStorer, a, b plumbing.Hash) ([]*object.Commit, error) {
	if b.IsZero() || a == b {
		return nil, nil
	}
	flags := map[plumbing.Hash]*walkItem{}
	q := &commitQueue{}
	add := func(h plumbing.Hash, f int) error {
		if it, ok := flags[h]; ok {
			if it.flags|f != it.flags {
				it.flags |= f
				heap.Push(q, &walkItem{it.c, -1}) // revisit to spread the new flag
			}
			return nil
		}
		c, err := object.GetCommit(s, h)
		if err != nil {
			return err
		}
		it := &walkItem{c, f}
		flags[h] = it
		heap.Push(q, &walkItem{c, -1})
		return nil
	}
	if err := add(b, fromB); err != nil {
		return nil, err
	}
	if !a.IsZero() {
		if err := add(a, fromA); err != nil {
			return nil, err
		}
	}
	var order []*walkItem
	slop := 5
	for q.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it := flags[heap.Pop(q).(*walkItem).c.Hash]
		if it.flags&fromB != 0 && it.flags&fromA == 0 {
			order = append(order, it)
		}
		for _, p := range it.c.ParentHashes {
			if err := add(p, it.flags); err != nil {
				return nil, err
			}
		}
		if onlyExcluded(q, flags) {
			if slop--; slop <= 0 {
				break
			}
		} else {
			slop = 5
		}
	}
	var out []*object.Commit
	seen := map[plumbing.Hash]bool{}
	for _, it := range order {
		if it.flags&fromA == 0 && !seen[it.c.Hash] {
			seen[it.c.Hash] = true
			out = append(out, it.c)
		}
	}
	return out, nil
}

func onlyExcluded(q *commitQueue, flags map[plumbing.Hash]*walkItem) bool {
	for _, x := range *q {
		if flags[x.c.Hash].flags&fromA == 0 {
			return false
		}
	}
	return true
}

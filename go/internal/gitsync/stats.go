package gitsync

import (
	"context"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// diffSummary is what changes between two commits.
type diffSummary struct {
	paths   []string // every path added, changed or removed
	files   int
	review  []ReviewPath
	changes object.Changes
}

func treeOf(s storer.EncodedObjectStorer, commit plumbing.Hash) (*object.Tree, error) {
	if commit.IsZero() {
		return &object.Tree{}, nil
	}
	c, err := object.GetCommit(s, commit)
	if err != nil {
		return nil, err
	}
	return c.Tree()
}

// summarize lists what changes between two commits: paths and the ones to review.
func summarize(ctx context.Context, s storer.EncodedObjectStorer, from, to plumbing.Hash, branch string) (*diffSummary, error) {
	a, err := treeOf(s, from)
	if err != nil {
		return nil, err
	}
	b, err := treeOf(s, to)
	if err != nil {
		return nil, err
	}
	changes, err := object.DiffTreeWithOptions(ctx, a, b, &object.DiffTreeOptions{})
	if err != nil {
		return nil, err
	}
	d := &diffSummary{files: len(changes), changes: changes}
	for _, c := range changes {
		name, mode, deleted := c.To.Name, c.To.TreeEntry.Mode, false
		if name == "" {
			name, mode, deleted = c.From.Name, c.From.TreeEntry.Mode, true
		}
		d.paths = append(d.paths, name)
		if r := gateReason(name, mode == filemode.Symlink); r != "" {
			if deleted {
				r += ", deleted"
			}
			d.review = append(d.review, ReviewPath{Path: name, Reason: r, Branch: branch})
		}
	}
	return d, nil
}

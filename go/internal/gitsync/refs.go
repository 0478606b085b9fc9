package gitsync

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/keystone-agent/keystone/internal/gitsync/sandboxgit"
)

// refUpdates works out how each remote-tracking ref moves, and which are pruned
// because the sandbox deleted their branch.
func (s *syncer) refUpdates(ctx context.Context, branches []sandboxgit.Branch) error {
	prefix := RefPrefix + s.o.Name + "/"
	existing, err := s.trackingRefs(prefix)
	if err != nil {
		return err
	}
	for _, b := range branches {
		ref := prefix + b.Name
		old := existing[ref]
		delete(existing, ref)
		if old == b.Hash {
			continue
		}
		u := RefUpdate{Branch: b.Name, Ref: ref, New: b.Hash.String()}
		base := s.head
		if !old.IsZero() {
			u.Old, base = old.String(), old
			ok, err := s.isAncestor(ctx, old, b.Hash)
			if err != nil {
				return err
			}
			u.Forced = !ok
		}
		_, news, err := s.rangeCommits(ctx, base, b.Hash)
		if err != nil {
			return err
		}
		u.Commits = news
		if ref != s.rep.Ref && u.Commits > 0 {
			d, err := summarize(ctx, s.u, base, b.Hash, b.Name)
			if err != nil {
				return err
			}
			s.rep.Review = append(s.rep.Review, d.review...)
		}
		s.rep.Refs = append(s.rep.Refs, u)
	}
	var gone []string
	for ref := range existing {
		gone = append(gone, ref)
	}
	sort.Strings(gone)
	for _, ref := range gone {
		s.rep.Refs = append(s.rep.Refs, RefUpdate{Branch: strings.TrimPrefix(ref, prefix), Ref: ref,
			Old: existing[ref].String(), Deleted: true})
	}
	return nil
}

// trackingRefs lists the host's refs under prefix.
func (s *syncer) trackingRefs(prefix string) (map[string]plumbing.Hash, error) {
	it, err := s.host.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("cannot list the refs of %q: %w", s.o.HostRepo, err)
	}
	refs := map[string]plumbing.Hash{}
	err = it.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference && strings.HasPrefix(r.Name().String(), prefix) {
			refs[r.Name().String()] = r.Hash()
		}
		return nil
	})
	return refs, err
}

func newCommits(refs []RefUpdate) int {
	n := 0
	for _, r := range refs {
		n += r.Commits
	}
	return n
}

// updateRefs prunes the refs of deleted branches, then moves every
// remote-tracking ref in one transaction of the host's git, with a reflog
// entry, so a rewritten sandbox branch leaves its old value findable. Pruning
// comes first and apart: a deleted `feature` and a new `feature/x` cannot both
// be in one transaction.
func (s *syncer) updateRefs(ctx context.Context) error {
	var prune, update strings.Builder
	for _, r := range s.rep.Refs {
		if r.Deleted {
			fmt.Fprintf(&prune, "delete %s %s\n", r.Ref, r.Old)
			continue
		}
		old := r.Old
		if old == "" {
			old = plumbing.ZeroHash.String()
		}
		fmt.Fprintf(&update, "update %s %s %s\n", r.Ref, r.New, old)
	}
	for _, ops := range []string{prune.String(), update.String()} {
		if ops == "" {
			continue
		}
		// Not cancelled with ctx: a git killed inside its transaction leaves lock files.
		_, err := s.git.run(context.WithoutCancel(ctx), []byte("start\n"+ops+"prepare\ncommit\n"), "update-ref",
			"--create-reflog", "-m", "keystone agent sync "+s.o.Name, "--stdin")
		if err != nil {
			return fmt.Errorf("cannot update the remote-tracking refs of %q: %w", s.o.Name, err)
		}
	}
	return nil
}

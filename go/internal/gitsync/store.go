package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keystone-agent/keystone/internal/gitsync/packwrite"
)

// storeObjects writes the arriving objects as one pack through the host's
// index-pack and installs it; a dry run has it verified in a temporary
// directory outside the repository, removed by s.close.
func (s *syncer) storeObjects(ctx context.Context) error {
	if s.tr.count() == 0 {
		return nil
	}
	objects := filepath.Join(s.dirs.common, "objects")
	parent := objects
	if s.o.DryRun {
		parent = os.TempDir()
	}
	in, err := startIncoming(ctx, s.git, parent, true, nil)
	if err != nil {
		return err
	}
	werr := s.writePack(ctx, in)
	trace("pack written")
	if werr != nil {
		// index-pack stopping first (it refused the pack) breaks the pipe: its
		// reason is the one to give.
		if _, gerr := in.finish(nil); gerr != nil && errors.Is(werr, syscall.EPIPE) {
			werr = blame(gerr)
		}
		in.abort()
		return werr
	}
	sum, err := in.finish(s.tr.hashes())
	if err != nil {
		in.abort()
		return blame(err)
	}
	if s.o.DryRun {
		// The verified pack stays, as the pack of a temporary object directory
		// of its own, until the host's git has counted the changed lines.
		s.verified = in
		if err := os.Mkdir(filepath.Join(in.dir, "pack"), 0o700); err != nil {
			return err
		}
		s.alternates = in.dir
		return in.movePack(in.dir, sum)
	}
	return in.install(objects, sum)
}

func (s *syncer) writePack(ctx context.Context, in *incoming) error {
	p, err := packwrite.New(in.stdin, uint32(s.tr.count()))
	if err != nil {
		return err
	}
	if err := s.tr.writePack(ctx, p); err != nil {
		return err
	}
	_, err = p.Close()
	return err
}

// blame marks index-pack's refusal of the sandbox's pack as the workspace's
// doing (ErrHostile), unless the host itself failed (HostFaultError).
func blame(err error) error {
	var hf *HostFaultError
	if errors.As(err, &hf) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrHostile, err)
}

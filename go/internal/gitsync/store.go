package gitsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/keystone-agent/keystone/internal/gitsync/packwrite"
)

// splitFrom is how many bytes of commits, trees and tags a sync must bring for
// its blobs to travel in a pack of their own: below it, what the second
// index-pack saves is less than the process it costs. Tests lower it.
var splitFrom int64 = 4 << 20

// shareCPUsUpTo is how many bytes of commits and trees, at most, leave a CPU
// to the blobs' index-pack when the two packs are verified side by side: its
// one thread must be done first, or the other pack is verified twice. Above
// it, the other index-pack's own threads save more than that risk costs.
const shareCPUsUpTo = 256 << 20

// verifiedAgain counts the packs of commits and trees verified a second time
// (see storeObjects), for the tests.
var verifiedAgain atomic.Int64

// holdBlobsForTest, set by a test, keeps the verified pack of blobs out of its
// directory until the other pack's first verdict: the order in which the other
// pack is verified again, which a test cannot otherwise count on.
var holdBlobsForTest bool

// storeObjects has the host's index-pack verify the arriving objects and
// installs them; a dry run keeps them verified in temporary object directories
// outside the repository, removed by s.close.
//
// A sync that brings many commits and trees sends its blobs in a pack of their
// own, verified at the same time as the pack of the rest, each by its own
// `index-pack --strict` (the bulk of both is git hashing and rebuilding
// objects, one CPU each): blobs name nothing, so their pack is checked whole
// on its own, and the other's index-pack finds them, and checks that each
// named one exists with the right type, through the blob pack's directory as
// an alternate object directory. That directory holds the pack only once it
// is verified, so a refusal of the other pack might come from looking for the
// blobs too early: that pack is then verified once more, the blobs in place.
func (s *syncer) storeObjects(ctx context.Context) error {
	if s.tr.count(allObjects) == 0 {
		return nil
	}
	objects := filepath.Join(s.dirs.common, "objects")
	parent := objects
	if s.o.DryRun {
		parent = os.TempDir()
	}
	var packs []*incoming
	var err error
	if len(s.tr.blobs) > 0 && s.tr.metaBytes >= splitFrom {
		packs, err = s.verifySplit(ctx, parent)
	} else {
		var in *incoming
		if in, err = s.startPack(ctx, parent, 0, ""); err == nil {
			err = s.verifyPack(ctx, in, allObjects, nil)
		}
		packs = []*incoming{in}
	}
	if err != nil {
		return err
	}
	if s.o.DryRun {
		// The verified packs stay, each the pack of a temporary object
		// directory of its own, until the host's git has counted the lines.
		s.verified = packs
		var dirs []string
		for _, in := range packs {
			dirs = append(dirs, in.dir)
		}
		s.alternates = alternatesEnv(dirs...)
		return nil
	}
	for i, in := range packs { // the blobs first: the rest names them
		if err := in.install(objects); err != nil {
			for _, later := range packs[i+1:] {
				later.remove()
			}
			return err
		}
	}
	return nil
}

// verifySplit verifies the blobs and the rest as two packs, side by side.
func (s *syncer) verifySplit(ctx context.Context, parent string) ([]*incoming, error) {
	s.tr.split()
	blobs, err := s.startPack(ctx, parent, 0, "")
	if err != nil {
		return nil, err
	}
	threads := 0 // git's own choice: up to 3
	if s.tr.metaBytes <= shareCPUsUpTo {
		threads = min(3, max(1, runtime.NumCPU()-1))
	}
	metaCtx, stopMeta := context.WithCancel(ctx)
	defer stopMeta()
	meta, err := s.startPack(metaCtx, parent, threads, blobs.dir)
	if err != nil {
		blobs.abort()
		return nil, err
	}
	blobsDone := make(chan error, 1)
	firstVerdict := make(chan struct{})
	var publishAfter <-chan struct{}
	if holdBlobsForTest {
		publishAfter = firstVerdict
	}
	go func() {
		var err error
		defer func() { blobsDone <- err }()
		defer recoverInto(&err)
		err = s.verifyPack(ctx, blobs, blobsOnly, publishAfter)
		trace("pack of blobs verified")
		if err != nil {
			stopMeta() // the sync fails for the blobs' reason: no need to wait for the rest
		}
	}()
	merr := s.verifyPack(metaCtx, meta, metaOnly, nil)
	close(firstVerdict)
	trace("pack of commits, trees and tags verified")
	if berr := <-blobsDone; berr != nil {
		blobs.abort() // done already, unless the goroutine panicked
		if merr == nil {
			meta.remove()
		}
		return nil, berr
	}
	if merr != nil && ctx.Err() == nil {
		trace("verifying again the pack of commits, trees and tags, refused with: " + merr.Error())
		verifiedAgain.Add(1)
		if meta, merr = s.startPack(ctx, parent, 0, blobs.dir); merr == nil {
			merr = s.verifyPack(ctx, meta, metaOnly, nil)
		}
	}
	if merr != nil {
		blobs.remove()
		return nil, merr
	}
	return []*incoming{blobs, meta}, nil
}

// startPack starts the host's index-pack for a pack of the sync, in a new
// temporary directory in parent, on threads threads (0: git's choice);
// alternate, when not "", is another such directory whose verified pack the
// new one may name objects of.
func (s *syncer) startPack(ctx context.Context, parent string, threads int, alternate string) (*incoming, error) {
	var env []string
	if alternate != "" {
		env = []string{"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + alternatesEnv(alternate)}
	}
	return startIncoming(ctx, s.git, parent, true, nil, threads, env)
}

// verifyPack writes the objects of part p to in, has index-pack verify them
// and moves the verified pack into in's pack directory (once publishAfter is
// closed, unless it is nil); on failure in is removed.
func (s *syncer) verifyPack(ctx context.Context, in *incoming, p part, publishAfter <-chan struct{}) error {
	werr := s.writePack(ctx, in, p)
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
	sum, err := in.finish(s.tr.hashes(p))
	if err != nil {
		in.abort()
		return blame(err)
	}
	if publishAfter != nil {
		<-publishAfter
	}
	if err := in.publish(sum); err != nil {
		in.abort()
		return err
	}
	return nil
}

func (s *syncer) writePack(ctx context.Context, in *incoming, pt part) error {
	p, err := packwrite.New(in.stdin, uint32(s.tr.count(pt)))
	if err != nil {
		return err
	}
	if err := s.tr.writePack(ctx, p, pt); err != nil {
		return err
	}
	_, err = p.Close()
	return err
}

// alternatesEnv is GIT_ALTERNATE_OBJECT_DIRECTORIES naming dirs: each quoted as
// git unquotes it, so that a ':' in a path does not split it.
func alternatesEnv(dirs ...string) string {
	quoted := make([]string, len(dirs))
	for i, d := range dirs {
		var b strings.Builder
		b.WriteByte('"')
		for _, c := range []byte(d) {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c == 0x7f:
				fmt.Fprintf(&b, "\\%03o", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		quoted[i] = b.String()
	}
	return strings.Join(quoted, string(filepath.ListSeparator))
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

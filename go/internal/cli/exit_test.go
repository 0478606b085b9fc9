package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/kvm"
	"github.com/keystone-agent/keystone/internal/nixbuild"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/sandbox"
)

// The guide's exit codes, decided once for every verb from typed errors.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", sandbox.ErrNotRepo), ExitNotRepo},
		{fmt.Errorf("x: %w", sandbox.ErrAlreadyRunning), ExitAlreadyRunning},
		{&nixbuild.BuildError{Err: errors.New("exit status 1")}, ExitBuildFailed},
		{fmt.Errorf("cannot build: %w", nixbuild.ErrNixNotFound), ExitBuildFailed},
		{fmt.Errorf("cannot build: %w", nixbuild.ErrForeignSource), ExitBuildFailed},
		{kvm.Check("/nonexistent/kvm"), ExitNoKVM},
		{&sandbox.UsageError{Msg: "bad"}, ExitUsage},
		{fmt.Errorf("%w: %q", registry.ErrNotFound, "x"), ExitNotFound},
		{errors.New("anything else"), ExitFailure},
	} {
		if got := classify(tc.err).Code; got != tc.code {
			t.Errorf("classify(%v) = %d; want %d", tc.err, got, tc.code)
		}
	}
}

// A failed nix build names the way around it: on a machine where nix is
// installed but cannot build (no flakes, no network), start otherwise never
// offers the portable guest that ./setup prepared (found by the QA campaign
// on Debian with nix-bin).
func TestBuildFailureHintNamesRunner(t *testing.T) {
	hint := classify(&nixbuild.BuildError{Err: errors.New("exit status 1"), Log: "/x/build.log"}).Hint
	if !strings.Contains(hint, "--runner") || !strings.Contains(hint, "/x/build.log") {
		t.Errorf("hint %q: want the build log and --runner", hint)
	}
}

package cli

import (
	"errors"
	"fmt"
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

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

// The guest writes its serial console, and git's messages name the
// sandbox's paths: escape sequences in either reach the terminal escaped
// (an OSC 52 clipboard write, a screen clear), and lines stay lines.
func TestReportEscapesSandboxText(t *testing.T) {
	var out strings.Builder
	err := &sandbox.BootError{Msg: "sync: unable to write file \x1b[2Jx\nerror: second line",
		Log: "login: \x1b]52;c;ZXZpbA==\x07\nok\r\x1b[1A"}
	report(&Env{Stderr: &out}, err)
	if strings.ContainsAny(out.String(), "\x1b\x07\r") {
		t.Fatalf("control characters reached the terminal: %q", out.String())
	}
	for _, want := range []string{"keystone: sync: unable to write file \\x1b[2Jx\nerror: second line\n", "  | login: \\x1b]52;c;ZXZpbA==\\x07\n", "  | ok\\x0d\\x1b[1A\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, out.String())
		}
	}
}

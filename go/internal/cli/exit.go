package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keystone-agent/keystone/internal/kvm"
	"github.com/keystone-agent/keystone/internal/nixbuild"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
)

// Exit codes. Verb-specific meanings follow the user guide; docs/cli.md lists them.
const (
	ExitOK      = 0
	ExitFailure = 1
	// start
	ExitNotRepo        = 1
	ExitAlreadyRunning = 2
	ExitBuildFailed    = 3
	ExitNoKVM          = 4
	// sync
	ExitNotFound  = 1
	ExitNoChanges = 2
	ExitConflict  = 3
	// ExitUsage is a bad flag, argument or value (EX_USAGE): no verb documents 64.
	ExitUsage = 64
	// ExitTransport is an SSH failure in exec/attach, as ssh(1) reports it.
	ExitTransport = sshconn.ExitTransport
)

// ExitError carries the code the process exits with, an optional hint line,
// and whether the message was already printed (quiet: nothing more to say).
type ExitError struct {
	Code  int
	Err   error
	Hint  string
	Quiet bool
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// exitStatus is a remote command's own status: nothing to print.
func exitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code, Quiet: true}
}

// hinter is an error that says what to do about it: every package's errors
// carry their hint this way, and the CLI prints it as `keystone: hint: …`,
// once, after the error line.
type hinter interface {
	error
	Hint() string
}

// classify maps the lifecycle's typed errors onto the guide's exit codes,
// once, for every verb. The error's own hint wins over the verb's general one.
func classify(err error) *ExitError {
	ee := exitError(err)
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		ee.Hint = h.Hint()
	}
	return ee
}

func exitError(err error) *ExitError {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee
	}
	var (
		ue *sandbox.UsageError
		ke *kvm.Error
		be *nixbuild.BuildError
		te *sshconn.TransportError
	)
	switch {
	case errors.As(err, &ue):
		return &ExitError{Code: ExitUsage, Err: err}
	case errors.Is(err, sandbox.ErrNotRepo):
		return &ExitError{Code: ExitNotRepo, Err: err, Hint: "run it inside a git repository, or give its path: `keystone agent start PATH`"}
	case errors.Is(err, sandbox.ErrAlreadyRunning):
		return &ExitError{Code: ExitAlreadyRunning, Err: err}
	case errors.As(err, &ke):
		return &ExitError{Code: ExitNoKVM, Err: err}
	case errors.As(err, &be):
		// The guide's words, then the tail of the build log.
		return &ExitError{Code: ExitBuildFailed,
			Err: &detailed{msg: fmt.Sprintf("Failed to build MicroVM (nix build: %v)", be.Err), detail: strings.Join(be.Tail, "\n")},
			Hint: "the whole build log is in " + be.Log + "; the first build needs network access to fetch nixpkgs and microvm.nix" +
				" (or boot a prebuilt runner with --runner DIR, such as the portable Debian guest that ./setup prints)"}
	case errors.Is(err, nixbuild.ErrNixNotFound):
		return &ExitError{Code: ExitBuildFailed, Err: fmt.Errorf("Failed to build MicroVM: %w", err),
			Hint: "install the Debian packages the portable guest is made of (`./setup` in the keystone repository does), or install Nix with flakes enabled"}
	case errors.Is(err, nixbuild.ErrForeignSource):
		return &ExitError{Code: ExitBuildFailed, Err: fmt.Errorf("Failed to build MicroVM: %w", err),
			Hint: "state/flake is the build source nix copies into the store: move the other files away"}
	case errors.As(err, &te):
		return &ExitError{Code: ExitTransport, Err: err}
	case errors.Is(err, registry.ErrNotFound):
		return &ExitError{Code: ExitNotFound, Err: err, Hint: "`keystone agent list` shows the sandboxes"}
	}
	return &ExitError{Code: ExitFailure, Err: err}
}

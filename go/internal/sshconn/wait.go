package sshconn

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrVMExited is the cause of a *WaitError when the VM process exited
// before its sshd became ready.
var ErrVMExited = errors.New("the VM exited")

// attemptTimeouts bound each WaitReady attempt: short at first, because a
// qemu user-net port accepts TCP before the guest's sshd is up and an attempt
// then hangs until its bound, growing later, because OpenSSH's sshd under TCG
// emulation needs ~1.4 s for one handshake and a too-short bound would never
// let it finish.
var attemptTimeouts = []time.Duration{1 * time.Second, 2 * time.Second, 3 * time.Second, 5 * time.Second}

// retryPause separates attempts that failed fast (connection refused while
// the guest boots), so the wait does not spin.
const retryPause = 100 * time.Millisecond

// WaitError is returned by WaitReady when sshd did not become ready: Err is
// ErrVMExited or the context's cause (context.DeadlineExceeded…), and Last is
// the last attempt's own error, nil when no attempt finished.
type WaitError struct {
	Addr     string
	Attempts int
	Last     error
	Err      error
}

func (e *WaitError) Error() string {
	var msg string
	switch {
	case errors.Is(e.Err, ErrVMExited):
		msg = fmt.Sprintf("the VM exited while waiting for its sshd at %s to accept the sandbox key", e.Addr)
	case errors.Is(e.Err, context.DeadlineExceeded):
		msg = fmt.Sprintf("timed out waiting for sshd at %s to accept the sandbox key", e.Addr)
	default:
		msg = fmt.Sprintf("stopped waiting for sshd at %s to accept the sandbox key: %v", e.Addr, e.Err)
	}
	if e.Last != nil {
		msg += fmt.Sprintf(" (%d attempts, last: %v)", e.Attempts, e.Last)
	}
	return msg
}

func (e *WaitError) Unwrap() error { return e.Err }

// WaitReady polls t until a full SSH handshake and public-key authentication
// succeed: a TCP connect proves nothing, since qemu's user-net forwarder
// accepts connections before the guest is up. It gives up with a *WaitError
// when exited is closed (the VM process died; nil means nothing to watch) or
// ctx ends, whichever comes first, without waiting for the current attempt.
// A host key mismatch is returned at once as a *TransportError: retrying
// cannot fix it, and it must not be hidden behind a timeout.
func WaitReady(ctx context.Context, t Target, exited <-chan struct{}) error {
	if err := t.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if exited != nil {
		go func() {
			select {
			case <-exited:
				cancel(ErrVMExited)
			case <-ctx.Done():
			}
		}()
	}
	var last error
	for i := 0; ; i++ {
		bound := attemptTimeouts[min(i, len(attemptTimeouts)-1)]
		actx, acancel := context.WithTimeoutCause(ctx, bound, fmt.Errorf("no answer within %v", bound))
		c, err := Dial(actx, t)
		acancel()
		if err == nil {
			c.Close() // readiness is proven; the caller dials its own connection
			return nil
		}
		var mismatch *HostKeyMismatchError
		if errors.As(err, &mismatch) {
			return err
		}
		if ctx.Err() == nil {
			// An attempt cut short by the end of the whole wait says
			// nothing about sshd; keep the one before it.
			last = err
		}
		select {
		case <-ctx.Done():
			return &WaitError{Addr: t.Addr, Attempts: i + 1, Last: last, Err: context.Cause(ctx)}
		case <-time.After(retryPause):
		}
	}
}

package sshconn

import (
	"golang.org/x/crypto/ssh"

	"context"
	"errors"
	"fmt"
	"time"
)

// ErrVMExited is the cause of a *WaitError when the VM process exited
// before its sshd became ready.
var ErrVMExited = errors.New("the VM exited")

// attemptTimeout bounds each WaitReady attempt once the server has sent its
// banner: a handshake under TCG on a loaded machine can take seconds.
const attemptTimeout = 15 * time.Second

// bannerWait is how long an attempt waits for the server's first bytes
// before it is abandoned as hanging in qemu's forwarder; it grows with the
// attempts so that a slow machine still gets through.
func bannerWait(attempt int) time.Duration {
	return min(time.Second+time.Duration(attempt)*100*time.Millisecond, 5*time.Second)
}

// retryPause is the pace at which attempts start, whether or not the earlier
// ones have ended (refused while the guest boots, or hanging in qemu's
// forwarder before the guest's network is up).
const retryPause = 150 * time.Millisecond

// maxInFlight bounds the attempts in flight at once. Dropbear drops a
// client's sixth unauthenticated connection (MAX_UNAUTH_PER_IP is 5), so
// attempts still in their handshake when one succeeds must leave room for
// the caller's own connection right after.
const maxInFlight = 3

// errSuperseded cancels the attempts in flight when the guest announces its sshd.
var errSuperseded = errors.New("superseded by an attempt after the guest's announcement")

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
	c, err := DialReady(ctx, t, exited, nil)
	if err != nil {
		return err
	}
	return c.Close() // readiness is proven; the caller dials its own connection
}

// DialReady waits as WaitReady does and returns the connection that proved
// readiness. A value received from hint (the guest announcing that its sshd
// listens, see package announce) cancels the attempts in flight, which began
// before sshd listened, and starts one at once, alone: on a guest with one
// emulated CPU, concurrent handshakes only slow each other down. Paced
// attempts resume if that one fails (a hint is never trusted). nil means no
// hints.
func DialReady(ctx context.Context, t Target, exited <-chan struct{}, hint <-chan struct{}) (*ssh.Client, error) {
	if err := t.validate(); err != nil {
		return nil, err
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
	// Attempts overlap: one starts every retryPause, each bounded by its own
	// timeout, so an attempt hanging in qemu's forwarder (the guest kernel
	// not answering yet) never delays the first one that can succeed.
	type result struct {
		c         *ssh.Client
		err       error
		cancelled bool // by a hint: says nothing about sshd
		n         int
	}
	results := make(chan result)
	inFlight, attempts, hinted := 0, 0, false
	cancels := map[int]context.CancelCauseFunc{}
	var last error
	tick := time.NewTicker(retryPause)
	defer tick.Stop()
	start := func() {
		bound := attemptTimeout
		n := attempts
		attempts++
		inFlight++
		actx, acancel := context.WithCancelCause(ctx)
		cancels[n] = acancel
		go func() {
			tctx, tcancel := context.WithTimeoutCause(actx, bound, fmt.Errorf("no answer within %v", bound))
			defer tcancel()
			c, err := dial(tctx, t, bannerWait(n))
			r := result{c: c, err: err, cancelled: errors.Is(context.Cause(actx), errSuperseded), n: n}
			select {
			case results <- r:
			case <-ctx.Done():
				if c != nil {
					c.Close()
				}
			}
		}()
	}
	start()
	for {
		select {
		case r := <-results:
			inFlight--
			cancels[r.n](nil)
			delete(cancels, r.n)
			if r.err == nil {
				return r.c, nil
			}
			var mismatch *HostKeyMismatchError
			if errors.As(r.err, &mismatch) {
				return nil, r.err
			}
			if ctx.Err() == nil && !r.cancelled {
				// An attempt cut short by the end of the whole wait says
				// nothing about sshd; keep the one before it.
				last = r.err
			}
		case <-tick.C:
			if inFlight < maxInFlight && !(hinted && inFlight > 0) {
				start()
			}
		case <-hint:
			for _, c := range cancels {
				c(errSuperseded)
			}
			hinted = true
			start()
		case <-ctx.Done():
			return nil, &WaitError{Addr: t.Addr, Attempts: attempts, Last: last, Err: context.Cause(ctx)}
		}
	}
}

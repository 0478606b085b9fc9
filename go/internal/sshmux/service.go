package sshmux

import (
	"context"
	"time"

	"github.com/keystone-agent/keystone/internal/announce"
	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/ownersock"
	"github.com/keystone-agent/keystone/internal/sshconn"
)

// Service is the host daemon's held connection (a hostd.Service): it serves
// the socket at once, connects to the sandbox as soon as the guest announces
// its sshd (or the paced handshakes find it), and is ready once connected,
// which is what `start` waits for.
type Service struct {
	Target sshconn.Target
	// Socket is the path of the unix socket (statedir.SessionSocket).
	Socket string
	// Console is the runner's console log and ConsoleFrom its size when
	// this boot began; "" when the console is elsewhere (no hints).
	Console     string
	ConsoleFrom int64
	// FirstTimeout bounds the wait for the first connection.
	FirstTimeout time.Duration
	Logf         func(format string, args ...any)
}

func (s *Service) Name() string { return "ssh connection" }

func (s *Service) Run(ctx context.Context, vm hostd.VM) error {
	l, err := ownersock.Listen(s.Socket)
	if err != nil {
		return err
	}
	defer ownersock.Remove(s.Socket)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	began := time.Now()
	var hints <-chan struct{}
	if s.Console != "" {
		hints = s.logHints(wctx, announce.Watch(wctx, s.Console, s.ConsoleFrom), began)
	}
	held := NewHeld(s.Target, hints, s.FirstTimeout, s.Logf)
	ready := func() {
		s.logf("connected to %s %v after the daemon started", s.Target.Addr, time.Since(began).Round(time.Millisecond))
		vm.Ready()
	}
	srv := &Server{HostKey: s.Target.HostKey, Lease: held.Lease, Logf: s.Logf}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	err = held.Run(ctx, vm.Gone, ready)
	// No new sessions; those open ended with the connection.
	l.Close()
	<-served
	return err
}

// logHints passes the guest's announcements on, saying when each came: with
// the time the connection was made, where a start's time goes.
func (s *Service) logHints(ctx context.Context, in <-chan struct{}, began time.Time) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-in:
				s.logf("the guest announced its sshd %v after the daemon started", time.Since(began).Round(time.Millisecond))
				select {
				case out <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *Service) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

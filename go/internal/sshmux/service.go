package sshmux

import (
	"context"
	"time"

	"github.com/keystone-agent/keystone/internal/announce"
	"github.com/keystone-agent/keystone/internal/hostd"
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
	l, err := Listen(s.Socket)
	if err != nil {
		return err
	}
	defer Remove(s.Socket)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var hints <-chan struct{}
	if s.Console != "" {
		hints = announce.Watch(wctx, s.Console, s.ConsoleFrom)
	}
	held := NewHeld(s.Target, hints, s.FirstTimeout, s.Logf)
	srv := &Server{HostKey: s.Target.HostKey, Lease: held.Lease, Logf: s.Logf}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	err = held.Run(ctx, vm.Gone, vm.Ready)
	// No new sessions; those open ended with the connection.
	l.Close()
	<-served
	return err
}

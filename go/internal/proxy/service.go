package proxy

import (
	"context"
	"path/filepath"
	"time"

	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Service runs the proxy as one of the host daemon's services: it listens on
// state/proxy.sock for the guest's connections until the sandbox stops.
type Service struct {
	StateDir string
	Options  Options // Refused is set by the service
}

// Name implements hostd.Service.
func (s *Service) Name() string { return "proxy" }

// shutdownGrace lets requests in flight finish when the sandbox stops.
const shutdownGrace = 2 * time.Second

// Run implements hostd.Service.
func (s *Service) Run(ctx context.Context, vm hostd.VM) error {
	logf := s.Options.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rec := newRecorder(s.StateDir, logf)
	o := s.Options
	o.Refused = rec.refused
	srv, err := New(o)
	if err != nil {
		return err
	}
	l, err := Listen(filepath.Join(s.StateDir, statedir.ProxySocket))
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	vm.Ready()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := rec.flush(); err != nil {
				logf("egress: cannot write %s: %v", statedir.EgressStatus, err)
			}
			continue
		case <-ctx.Done():
		case <-vm.Gone:
		case err := <-served:
			rec.flush()
			return err
		}
		break
	}
	l.Close()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	srv.Shutdown(sctx)
	<-served
	return rec.flush()
}

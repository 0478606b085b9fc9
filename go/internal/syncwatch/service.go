package syncwatch

import (
	"context"

	"github.com/keystone-agent/keystone/internal/hostd"
)

// Service runs the watcher as one of the host daemon's services: it watches
// until the sandbox is stopped, and after the VM has ended it syncs what is
// left, then returns.
type Service struct {
	Options Options
	OnEvent func(Event)
}

// Name implements hostd.Service.
func (s *Service) Name() string { return "sync watcher (" + s.Options.Mode + ")" }

// Run implements hostd.Service.
func (s *Service) Run(ctx context.Context, vm hostd.VM) error {
	o := s.Options
	o.Alive = func() bool {
		select {
		case <-vm.Gone:
			return false
		default:
			return true
		}
	}
	vm.Ready()
	return Watch(ctx, o, s.OnEvent)
}

package forward

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/ownersock"
)

// Service keeps the background forwards of one sandbox in its host daemon
// (a hostd.Service): it serves the control socket, binds what the owner's
// `forward --background` asks for, and ends every forward with the daemon,
// so `stop` ends them. They are not kept across a restart: what they reached
// (a dev server) is gone with the VM, and a port taken meanwhile must not
// fail the next start.
type Service struct {
	Socket string // statedir.ForwardSocket in the sandbox's state/
	// Conn returns the SSH connection every forward shares: the daemon's
	// held connection (sshmux), waiting while it is being made.
	Conn func(context.Context) (Dialer, error)
	Logf func(format string, args ...any)

	mu   sync.Mutex
	kept map[int]*kept // by host port
	wg   sync.WaitGroup
}

type kept struct {
	Listener *Listener
	cancel   context.CancelFunc
}

func (s *Service) Name() string { return "port forwards" }

func (s *Service) Run(ctx context.Context, vm hostd.VM) error {
	l, err := ownersock.Listen(s.Socket)
	if err != nil {
		return err
	}
	defer ownersock.Remove(s.Socket)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.kept = map[int]*kept{}
	go func() {
		select {
		case <-ctx.Done():
		case <-vm.Gone:
		}
		cancel()
		l.Close()
	}()
	vm.Ready()
	for {
		c, err := ownersock.Accept(l, func(err error) { s.Logf("control socket: refused %v", err) })
		if err != nil {
			break
		}
		go answer(c, func(req Request) Response { return s.handle(ctx, req) })
	}
	s.mu.Lock()
	for _, k := range s.kept {
		k.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Service) handle(ctx context.Context, req Request) Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return Response{Error: "the host daemon is stopping"}
	}
	switch req.Op {
	case OpAdd:
		return s.add(ctx, req.Forwards)
	case OpList:
		return Response{Forwards: s.list(nil)}
	case OpCancel:
		return s.cancelPorts(req.HostPorts)
	}
	return Response{Error: fmt.Sprintf("unknown request %q", req.Op)}
}

// add binds every spec, all or none, and serves them until cancelled.
func (s *Service) add(ctx context.Context, specs []Spec) Response {
	if len(specs) == 0 {
		return Response{Error: "no forwards given"}
	}
	if len(s.kept)+len(specs) > MaxForwards {
		return Response{Error: fmt.Sprintf("at most %d forwards are kept at once", MaxForwards)}
	}
	for _, sp := range specs {
		if sp.GuestPort < 1 || sp.GuestPort > 65535 || sp.HostPort < 0 || sp.HostPort > 65535 {
			return Response{Error: fmt.Sprintf("bad forward %d:%d", sp.HostPort, sp.GuestPort)}
		}
	}
	ls, err := Listen(specs)
	var inUse *PortInUseError
	if errors.As(err, &inUse) {
		return Response{InUse: inUse.Port}
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	var added []Spec
	for _, l := range ls {
		fctx, cancel := context.WithCancel(ctx)
		s.kept[l.HostPort] = &kept{Listener: l, cancel: cancel}
		added = append(added, l.Spec)
		s.Logf("forwarding %s", l.Spec)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := Serve(fctx, l, s.Conn, s.Logf); err != nil {
				s.Logf("%s: %v", l.Spec, err)
			}
		}()
	}
	return Response{Forwards: added}
}

// cancelPorts ends the forwards on ports (all when empty); a port without a
// forward refuses the whole request.
func (s *Service) cancelPorts(ports []int) Response {
	for _, p := range ports {
		if s.kept[p] == nil {
			return Response{Error: fmt.Sprintf("no background forward on host port %d", p)}
		}
	}
	gone := s.list(ports)
	for _, sp := range gone {
		s.kept[sp.HostPort].cancel()
		delete(s.kept, sp.HostPort)
		s.Logf("stopped forwarding %s", sp)
	}
	return Response{Forwards: gone}
}

// list returns the kept forwards on ports (all when empty), by host port.
func (s *Service) list(ports []int) []Spec {
	out := []Spec{}
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	for p, k := range s.kept {
		if len(ports) == 0 || want[p] {
			out = append(out, k.Listener.Spec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HostPort < out[j].HostPort })
	return out
}

package hostd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeService is a real service of the test: it records what it was told.
type fakeService struct {
	name      string
	failEarly error // returned before Ready
	failLate  error // returned after Gone or ctx
	sawGone   atomic.Bool
	sawCancel atomic.Bool
}

func (s *fakeService) Name() string { return s.name }

func (s *fakeService) Run(ctx context.Context, vm VM) error {
	if s.failEarly != nil {
		return s.failEarly
	}
	vm.Ready()
	select {
	case <-vm.Gone:
		s.sawGone.Store(true)
	case <-ctx.Done():
		s.sawCancel.Store(true)
	}
	return s.failLate
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestReadyOnceAllServicesAreReadyThenEndsWhenTheVMIsGone(t *testing.T) {
	var alive atomic.Bool
	alive.Store(true)
	askedAlive := make(chan struct{}, 1)
	isAlive := func() bool {
		up := alive.Load()
		if up {
			select {
			case askedAlive <- struct{}{}:
			default:
			}
		}
		return up
	}
	a, b := &fakeService{name: "a"}, &fakeService{name: "b", failLate: errors.New("b broke")}
	ready := make(chan struct{})
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Options{
			Services: []Service{a, b},
			Alive:    isAlive,
			Interval: time.Millisecond,
			Ready:    func() { close(ready) },
			Log:      &log,
		})
	}()
	<-ready      // blocks forever (test timeout) if Ready is never called
	<-askedAlive // the daemon has seen the VM run
	alive.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v; want nil (a failure after ready is logged, not returned)", err)
	}
	if !a.sawGone.Load() || !b.sawGone.Load() {
		t.Errorf("services saw the VM gone: a=%v b=%v; want both", a.sawGone.Load(), b.sawGone.Load())
	}
	if !strings.Contains(log.String(), "b: b broke") {
		t.Errorf("log lacks the late failure:\n%s", log.String())
	}
}

func TestAServiceThatFailsBeforeReadyStopsTheOthers(t *testing.T) {
	good := &fakeService{name: "good"}
	bad := &fakeService{name: "proxy", failEarly: errors.New("port taken")}
	readyCalled := false
	err := Run(context.Background(), Options{
		Services: []Service{good, bad},
		Ready:    func() { readyCalled = true },
	})
	var nr *ErrNotReady
	if !errors.As(err, &nr) || nr.Service != "proxy" {
		t.Fatalf("Run: %v; want ErrNotReady for proxy", err)
	}
	if readyCalled {
		t.Error("Ready was called although a service failed before it was ready")
	}
	if !good.sawCancel.Load() {
		t.Error("the other service was not stopped")
	}
}

func TestCancelStopsEveryService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &fakeService{name: "a"}
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Run(ctx, Options{Services: []Service{a}, Ready: func() { close(ready) }})
	}()
	<-ready
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !a.sawCancel.Load() || a.sawGone.Load() {
		t.Errorf("cancel=%v gone=%v; want cancel only", a.sawCancel.Load(), a.sawGone.Load())
	}
}

// The daemon may start before the VM writes its pid file: a VM never seen
// alive is given up on only after Grace, by the clock the test owns.
func TestGraceBeforeTheVMIsFirstSeen(t *testing.T) {
	var now atomic.Int64
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	a := &fakeService{name: "a"}
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Options{Services: []Service{a},
			Alive: func() bool { return false }, Interval: time.Millisecond, Grace: time.Minute, Now: clock})
	}()
	select {
	case <-done:
		t.Fatal("Run ended before the grace period was over")
	case <-time.After(50 * time.Millisecond):
	}
	now.Store(int64(2 * time.Minute))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !a.sawGone.Load() {
		t.Error("the service was not told the VM is gone")
	}
}

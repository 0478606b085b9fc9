// Package hostd is the per-sandbox host daemon: one process per running
// sandbox (`keystone agent hostd <name>`, started by `start` and stopped by
// `stop`; a systemd unit for declared sandboxes) that runs the sandbox's
// long-lived host-side services side by side: the sync watcher of the auto
// sync modes, and every other service that needs a process on the host while
// the VM runs.
//
// It owns the services' common life: start them, tell the parent once all are
// ready, end them when the VM is gone or on SIGTERM, and keep going when one
// fails. It never runs anything of the sandbox's; each service guards its
// own boundary.
package hostd

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Service is one long-lived job of the daemon.
type Service interface {
	// Name says what the service is, for the log ("sync watcher").
	Name() string
	// Run serves until ctx is done (stop now: the sandbox is being stopped)
	// or vm.Gone is closed (the VM has ended: finish what is owed, then
	// return). It calls vm.Ready once it can be used; a service that returns
	// before calling Ready fails the daemon's start.
	Run(ctx context.Context, vm VM) error
}

// VM is what a service is told about its sandbox's life.
type VM struct {
	Gone  <-chan struct{} // closed once the VM has ended
	Ready func()          // the service can be used now
}

// Options configure Run.
type Options struct {
	Services []Service
	// Alive reports whether the sandbox's VM runs; nil means it runs until ctx
	// is done. The daemon may start before the VM has written its pid file:
	// until Alive first says true, Grace is allowed for it.
	Alive    func() bool
	Interval time.Duration // how often Alive is asked; 0 means DefaultInterval
	Grace    time.Duration // 0 means DefaultGrace
	// Ready is called once, when every service is ready (at once when there
	// are none).
	Ready func()
	Log   io.Writer // one line per event, prefixed with the time
	Now   func() time.Time
}

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultGrace    = time.Minute
)

// ErrNotReady is wrapped by Run's error when a service ended before it was
// ready.
type ErrNotReady struct {
	Service string
	Err     error
}

func (e *ErrNotReady) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%s ended before it was ready", e.Service)
	}
	return fmt.Sprintf("%s: %v", e.Service, e.Err)
}

func (e *ErrNotReady) Unwrap() error { return e.Err }

// Run runs every service until ctx is done or the VM is gone, and returns once
// all have returned. A service that fails after it was ready is logged and
// the others go on; one that fails before makes Run stop the others and
// return *ErrNotReady.
func Run(ctx context.Context, o Options) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan struct{})
	d := &daemon{o: o, pending: len(o.Services), failed: make(chan error, len(o.Services))}
	if d.pending == 0 {
		d.ready()
	}
	var wg sync.WaitGroup
	for _, s := range o.Services {
		wg.Add(1)
		go func(g <-chan struct{}) {
			defer wg.Done()
			d.run(ctx, s, g)
		}(gone)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	t := time.NewTicker(o.Interval)
	defer t.Stop()
	started, seen, ended := o.Now(), false, false
	var err error
	stop := ctx.Done()
	for {
		select {
		case <-finished:
			return err
		case e := <-d.failed:
			if err == nil {
				err = e
			}
			cancel()
		case <-stop:
			stop = nil // the services are told by ctx; wait for them
			d.logf("stopping: %v", context.Cause(ctx))
		case <-t.C:
			if o.Alive == nil || ended {
				continue
			}
			up := o.Alive()
			seen = seen || up
			if !up && (seen || o.Now().Sub(started) >= o.Grace) {
				d.logf("the VM has ended")
				close(gone)
				ended = true
			}
		}
	}
}

type daemon struct {
	o       Options
	mu      sync.Mutex
	pending int
	failed  chan error
	logMu   sync.Mutex
}

func (d *daemon) logf(format string, args ...any) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	fmt.Fprintf(d.o.Log, "%s hostd: %s\n", d.o.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func (d *daemon) ready() {
	if d.o.Ready != nil {
		d.o.Ready()
	}
}

func (d *daemon) run(ctx context.Context, s Service, gone <-chan struct{}) {
	var once sync.Once
	isReady := false
	err := s.Run(ctx, VM{Gone: gone, Ready: func() {
		once.Do(func() {
			d.mu.Lock()
			isReady = true
			d.pending--
			all := d.pending == 0
			d.mu.Unlock()
			d.logf("%s ready", s.Name())
			if all {
				d.ready()
			}
		})
	}})
	d.mu.Lock()
	wasReady := isReady
	d.mu.Unlock()
	switch {
	case !wasReady && ctx.Err() == nil:
		d.logf("%s failed before it was ready: %v", s.Name(), err)
		d.failed <- &ErrNotReady{Service: s.Name(), Err: err}
	case err != nil:
		d.logf("%s: %v", s.Name(), err)
	default:
		d.logf("%s done", s.Name())
	}
}

// ReadyFDEnv names the environment variable that gives the daemon the file
// descriptor on which it reports readiness to the `start` that launched it:
// one line, "ready", then close. Without it (a systemd unit) nothing is sent.
const ReadyFDEnv = "KEYSTONE_HOSTD_READY_FD"

// ReadyMessage is the line a daemon writes once every service is ready.
const ReadyMessage = "ready\n"

// FailedPrefix begins the line a daemon writes instead when a service ended
// before it was ready; the rest of the line says why.
const FailedPrefix = "failed: "

// CredentialsFDEnv names the environment variable that gives the daemon the
// file descriptor of a pipe carrying the sandbox's API credentials from the
// `start` that launched it (package credentials' format), read once at
// start: credentials never travel in argv, the environment or a file.
const CredentialsFDEnv = "KEYSTONE_HOSTD_CREDENTIALS_FD"

// CredentialsRecorded ends what `start` writes on the credentials pipe, and
// it writes it only once the daemon's pid is on disk: a daemon that reads
// the pipe to its end without it exits before it does anything, since the
// start that launched it died (kill -9, a crash) before recording it, and
// stop could never find it. It is a comment line in the credentials' format.
const CredentialsRecorded = "# recorded\n"

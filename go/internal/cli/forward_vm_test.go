package cli

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/forward"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
	"github.com/keystone-agent/keystone/internal/webtest"
)

// issue 13: a server in the guest answers through `forward`, in the
// foreground and through the host daemon: a plain response, a streamed one,
// a WebSocket upgrade and 100 connections at once.
func TestForwardVM(t *testing.T) {
	tenv := testenv.New(t)
	sb := tenv.Start(t, "web")
	webtest.BuildServer(t, filepath.Join(sb.Dir.Workspace(), webtest.ServerName))
	ctx := context.Background()
	c, err := sb.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A Go program takes seconds to load over 9p under TCG: the same
	// command waits until it answers.
	var out strings.Builder
	code, err := sshconn.Exec(ctx, c, sshconn.Command{Argv: []string{"sh", "-c", webtest.StartInGuest}, Dir: "/workspace", Stdout: &out, Stderr: &out})
	c.Close()
	if err != nil || code != 0 {
		t.Fatalf("starting the server in the guest: %d, %v\n%s", code, err, out.String())
	}

	t.Run("foreground", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		env := &Env{Stdout: w, Stderr: testWriter{t}, sandboxes: tenv.Env}
		fctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- Run(fctx, env, []string{"forward", "web", "0:8080"}); w.Close() }()
		line, err := bufio.NewReader(r).ReadString('\n')
		m := regexp.MustCompile(`^127\.0\.0\.1:(\d+) -> 8080\n$`).FindStringSubmatch(line)
		if m == nil {
			stop()
			t.Fatalf("forward printed %q, %v; want its forward (%v)", line, err, <-done)
		}
		webtest.Check(t, "127.0.0.1:"+m[1])
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("forward ended with %v; want nil after an interrupt", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("forward did not end within a minute of the interrupt")
		}
	})

	t.Run("background", func(t *testing.T) {
		added, err := forward.Ask(ctx, sb.Dir.Path(statedir.ForwardSocket),
			forward.Request{Op: forward.OpAdd, Forwards: []forward.Spec{{HostPort: 0, GuestPort: 8080}}})
		if err != nil {
			t.Fatalf("forward --background: %v", err)
		}
		webtest.Check(t, "127.0.0.1:"+strconv.Itoa(added[0].HostPort))
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

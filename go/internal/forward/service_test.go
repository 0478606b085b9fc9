package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/hostd"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"github.com/keystone-agent/keystone/internal/webtest"
)

// startService runs a Service over a real sshd, as the host daemon does,
// and returns its socket and a function that ends it (as `stop` does).
func startService(t *testing.T, dir string) (string, func() error) {
	t.Helper()
	srv := sshdtest.Start(t, sshdtest.Dropbear)
	socket := filepath.Join(dir, "forward.sock")
	conn := &Conn{Dial: func(ctx context.Context) (*ssh.Client, error) { return sshconn.Dial(ctx, srv.Target()) }}
	t.Cleanup(func() { conn.Close() })
	s := &Service{Socket: socket, Logf: t.Logf, Conn: conn.Get}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, hostd.VM{Gone: make(chan struct{}), Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the service ended before it was ready: %v", err)
	}
	var err error
	var once sync.Once
	stop := func() error { once.Do(func() { cancel(); err = <-done }); return err }
	t.Cleanup(func() { stop() })
	return socket, stop
}

func webServer(t *testing.T) int {
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(web, webtest.Handler())
	t.Cleanup(func() { web.Close() })
	return web.Addr().(*net.TCPAddr).Port
}

func httpGet(addr string) (string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/hello")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// The daemon's forwards: added, listed, refused when the port is taken
// (nothing else bound), cancelled one by one, and all gone with the daemon.
func TestServiceKeepsForwards(t *testing.T) {
	guest := webServer(t)
	socket, stop := startService(t, t.TempDir())
	ctx := context.Background()

	added, err := Ask(ctx, socket, Request{Op: OpAdd, Forwards: []Spec{{0, guest}, {0, guest}}})
	if err != nil || len(added) != 2 || added[0].HostPort == 0 {
		t.Fatalf("add = %v, %v; want two forwards with their ports", added, err)
	}
	for _, f := range added {
		if got, err := httpGet(net.JoinHostPort("127.0.0.1", strconv.Itoa(f.HostPort))); err != nil || got != webtest.Hello {
			t.Fatalf("through %s: %q, %v", f, got, err)
		}
	}
	listed, err := Ask(ctx, socket, Request{Op: OpList})
	if err != nil || len(listed) != 2 {
		t.Fatalf("list = %v, %v; want the two", listed, err)
	}

	free := freePort(t)
	_, err = Ask(ctx, socket, Request{Op: OpAdd, Forwards: []Spec{{free, guest}, {added[0].HostPort, guest}}})
	var inUse *PortInUseError
	if !errors.As(err, &inUse) || inUse.Port != added[0].HostPort {
		t.Fatalf("adding a taken port = %v; want PortInUseError for %d", err, added[0].HostPort)
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(free))); err == nil {
		c.Close()
		t.Errorf("a refused request left port %d bound", free)
	}

	var refused *RefusedError
	if _, err := Ask(ctx, socket, Request{Op: OpCancel, HostPorts: []int{free}}); !errors.As(err, &refused) {
		t.Errorf("cancelling a port without a forward = %v; want RefusedError", err)
	}
	gone, err := Ask(ctx, socket, Request{Op: OpCancel, HostPorts: []int{added[0].HostPort}})
	if err != nil || len(gone) != 1 || gone[0] != added[0] {
		t.Fatalf("cancel = %v, %v; want %v", gone, err, added[0])
	}
	if _, err := httpGet(net.JoinHostPort("127.0.0.1", strconv.Itoa(added[0].HostPort))); err == nil {
		t.Errorf("a cancelled forward still answers")
	}
	if _, err := Ask(ctx, socket, Request{Op: "bogus"}); !errors.As(err, &refused) {
		t.Errorf("an unknown request = %v; want RefusedError", err)
	}

	if err := stop(); err != nil {
		t.Errorf("the service ended with %v", err)
	}
	if _, err := httpGet(net.JoinHostPort("127.0.0.1", strconv.Itoa(added[1].HostPort))); err == nil {
		t.Errorf("a forward outlived its daemon")
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlived its daemon: %v", err)
	}
	if _, err := Ask(ctx, socket, Request{Op: OpList}); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("asking a stopped daemon = %v; want ErrNoDaemon", err)
	}
}

// Another local user is refused even when the socket's mode is loosened.
func TestServiceRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	// A directory anyone can enter, holding the socket and this test
	// program: only the daemon's own check stands in the other user's way.
	dir, err := os.MkdirTemp("", "forward-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	self := filepath.Join(dir, "forward.test")
	if err := os.Link(os.Args[0], self); err != nil {
		t.Skipf("cannot link the test program where another user can run it: %v", err)
	}
	socket, _ := startService(t, dir)
	os.Chmod(socket, 0o666)
	cmd := exec.Command(self, "-test.run=^TestHelperAskAsNobody$", "-test.v")
	cmd.Env = append(os.Environ(), "KEYSTONE_TEST_SOCKET="+socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused:") {
		t.Errorf("another user's request: %v\n%s", err, out)
	}
	if list, err := Ask(context.Background(), socket, Request{Op: OpList}); err != nil || len(list) != 0 {
		t.Errorf("after another user's attempt: %v, %v; want no forwards", list, err)
	}
}

// TestHelperAskAsNobody runs in a child process as another user.
func TestHelperAskAsNobody(t *testing.T) {
	socket := os.Getenv("KEYSTONE_TEST_SOCKET")
	if socket == "" {
		t.Skip("helper of TestServiceRefusesOtherUsers")
	}
	// The client's own check refuses a daemon of another user first; talk
	// to the socket directly, as a hostile client would.
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("unreachable, so the daemon's check was not tried: %v", err)
	}
	defer c.Close()
	writeMessage(c, Request{Op: OpAdd, Forwards: []Spec{{0, 22}}})
	var resp Response
	if err := readMessage(c, &resp); err != nil {
		t.Logf("refused: %v", err)
		return
	}
	t.Fatalf("another user was answered: %+v", resp)
}

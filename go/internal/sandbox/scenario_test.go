package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/testenv"
)

func execOut(t *testing.T, sb *sandbox.Sandbox, argv ...string) string {
	t.Helper()
	c, err := sb.Dial(context.Background())
	if err != nil {
		t.Fatalf("dial %s: %v", sb.Name, err)
	}
	defer c.Close()
	var out bytes.Buffer
	code, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: argv, Dir: "/workspace", Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("exec %v in %s: %d, %v", argv, sb.Name, code, err)
	}
	return out.String()
}

// Two sandboxes run at once on different ports, each with its own workspace.
func TestTwoSandboxesAtOnce(t *testing.T) {
	env := testenv.New(t)
	testenv.Guest(t)
	var a, b *sandbox.Sandbox
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = env.Start(t, "alpha") }()
	go func() { defer wg.Done(); b = env.Start(t, "beta") }()
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}
	if a.SSHPort == b.SSHPort {
		t.Fatalf("both sandboxes got port %d", a.SSHPort)
	}
	for _, sb := range []*sandbox.Sandbox{a, b} {
		if sb.SSHPort < sandbox.FirstPort {
			t.Errorf("%s: port %d; want one from %d on", sb.Name, sb.SSHPort, sandbox.FirstPort)
		}
		if got := execOut(t, sb, "cat", "README.md"); got != "# "+sb.Name+"\n" {
			t.Errorf("%s sees README %q", sb.Name, got)
		}
		if got := execOut(t, sb, "hostname"); got != sb.Name+"\n" {
			t.Errorf("hostname in %s = %q", sb.Name, got)
		}
	}
	// The forwarded ports are bound on loopback only.
	for _, sb := range []*sandbox.Sandbox{a, b} {
		if addr := nonLoopback(); addr != "" {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(sb.SSHPort)), time.Second)
			if err == nil {
				c.Close()
				t.Errorf("%s: port %d answers on %s; want loopback only", sb.Name, sb.SSHPort, addr)
			}
		}
	}
	stopFreesPort(t, env, a)
	// b still runs after a stopped.
	execOut(t, b, "true")
	stopFreesPort(t, env, b)
}

// stopFreesPort is checked after every test that stops a sandbox.
func stopFreesPort(t *testing.T, env *testenv.Env, sb *sandbox.Sandbox) {
	t.Helper()
	if _, err := env.Stop(sb); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(sb.SSHPort))
	if err != nil {
		t.Fatalf("port %d still taken after stop: %v", sb.SSHPort, err)
	}
	ln.Close()
	if pid, _ := runner.ReadPID(sb.Dir.State()); pid != 0 {
		t.Fatalf("pid file left after stop: %d", pid)
	}
}

func nonLoopback() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// A VM killed with SIGKILL: status tells the truth, and start recovers.
func TestKilledVMIsReportedAndRecovers(t *testing.T) {
	env := testenv.New(t)
	sb := env.Start(t, "victim")
	execOut(t, sb, "sh", "-c", "echo survived > keep.txt")
	pid, err := runner.ReadPID(sb.Dir.State())
	if err != nil || pid == 0 {
		t.Fatalf("pid file: %d, %v", pid, err)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Await(t, "status after SIGKILL", 10*time.Second, func() string {
		st := env.Inspect(sb)
		if st.State != sandbox.Broken || !strings.Contains(st.Reason, "exited without being stopped") {
			return fmt.Sprintf("got state %q (%s); want %q saying the VM exited without being stopped", st.State, st.Reason, sandbox.Broken)
		}
		return ""
	})
	again, err := env.Env.Start(context.Background(), sandbox.Spec{Project: sb.ProjectPath, MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual"})
	if err != nil {
		t.Fatalf("start after SIGKILL: %v", err)
	}
	if got := execOut(t, again, "cat", "keep.txt"); got != "survived\n" {
		t.Fatalf("workspace after recovery: %q", got)
	}
}

// A port held by another process is skipped for a new sandbox, and a
// restarted sandbox whose port was taken moves to a free one.
func TestPortTakenByAnotherProcess(t *testing.T) {
	env := testenv.New(t)
	testenv.Guest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(sandbox.FirstPort))
	if err != nil {
		t.Skipf("port %d is busy already: %v", sandbox.FirstPort, err)
	}
	sb := env.Start(t, "porty")
	ln.Close()
	if sb.SSHPort == sandbox.FirstPort {
		t.Fatalf("sandbox took port %d although another process held it", sb.SSHPort)
	}
	if _, err := env.Stop(sb); err != nil {
		t.Fatal(err)
	}
	// Someone else takes the sandbox's port while it is stopped.
	held, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(sb.SSHPort))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	again, err := env.Env.Start(context.Background(), sandbox.Spec{Project: sb.ProjectPath, MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual"})
	if err != nil {
		t.Fatalf("restart with its port taken: %v", err)
	}
	if again.SSHPort == sb.SSHPort {
		t.Fatalf("restart kept the taken port %d", sb.SSHPort)
	}
	reg, _ := env.Registry.Get("porty")
	if reg.SSHPort != again.SSHPort {
		t.Fatalf("registry records port %d; the VM uses %d", reg.SSHPort, again.SSHPort)
	}
	execOut(t, again, "true")
}

// A VM that dies during boot fails start at once with the console's tail,
// and a new sandbox leaves nothing behind.
func TestVMDyingDuringBoot(t *testing.T) {
	env := testenv.New(t)
	dir := fakeRunner(t, "echo 'Kernel panic - not syncing: test'\nexit 1")
	// Were the death missed, start would wait for SSH for an hour and the
	// test would time out: no timing is asserted.
	env.Timeouts.Ready = time.Hour
	_, err := env.Env.Start(context.Background(), sandbox.Spec{Project: env.Repo(t, "doomed"), MemoryMB: 2048, VCPUs: 1, Network: "user", SyncMode: "manual", Runner: dir})
	var be *sandbox.BootError
	if !errors.As(err, &be) {
		t.Fatalf("start = %v; want a BootError", err)
	}
	if !errors.Is(err, sshconn.ErrVMExited) {
		t.Errorf("start = %v; want it to say the VM exited", err)
	}
	if !bytes.Contains([]byte(be.Log), []byte("Kernel panic")) {
		t.Errorf("error log %q; want the console's tail", be.Log)
	}
	if _, err := os.Stat(env.Root.Sandbox("doomed").Root()); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left behind: %v", err)
	}
	if _, err := env.Registry.Get("doomed"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("registry entry left behind: %v", err)
	}
}

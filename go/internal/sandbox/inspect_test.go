package sandbox

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// stateProcess runs a process whose working directory is dir, as the runner
// and the host daemon run in the sandbox's state directory.
func stateProcess(t *testing.T, dir string) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// A VM that runs and answers SSH while its host daemon is gone (killed,
// crashed) is reported broken with the reason, not running: the guest has
// lost its proxy, forwards and auto sync, and `start` must not refuse to
// recover it as "already running" (found by the QA campaign: kill -9 of
// hostd left status saying running and every start refusing).
func TestEvidenceNeedsTheHostDaemon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "SSH-2.0-test\r\n")
			c.Close()
		}
	}()
	sb := &Sandbox{Entry: registry.Entry{Name: "app", SSHPort: ln.Addr().(*net.TCPAddr).Port}, Dir: statedir.Sandbox(t.TempDir())}
	for _, d := range []string{sb.Dir.State(), sb.Dir.Workspace()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := runner.WritePID(sb.Dir.State(), stateProcess(t, sb.Dir.State())); err != nil {
		t.Fatal(err)
	}

	state, _, reason := evidence(sb)
	if state != Broken || !strings.Contains(reason, "host daemon") {
		t.Fatalf("without a daemon: %s (%s); want %s naming the host daemon", state, reason, Broken)
	}
	daemon := fmt.Sprintf("%d\n", stateProcess(t, sb.Dir.State()))
	if err := os.WriteFile(sb.Dir.Path(statedir.DaemonPID), []byte(daemon), 0o600); err != nil {
		t.Fatal(err)
	}
	if state, _, reason := evidence(sb); state != Running {
		t.Fatalf("with its daemon: %s (%s); want %s", state, reason, Running)
	}
}

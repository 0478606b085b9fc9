package runner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeRunner makes a runner directory whose microvm-run is the given shell
// script: a real process under the contract, without a VM.
func writeRunner(t *testing.T, run, shutdown string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, RunBin), []byte("#!/bin/sh\n"+run+"\n"), 0o755)
	if shutdown != "" {
		os.WriteFile(filepath.Join(dir, ShutdownBin), []byte("#!/bin/sh\n"+shutdown+"\n"), 0o755)
	}
	return dir
}

func TestCheck(t *testing.T) {
	dir := writeRunner(t, "exec sleep 1", "")
	if m, err := Check(dir); err != nil || !m.NeedsKVM {
		t.Fatalf("Check = %+v, %v; want NeedsKVM without runner.json", m, err)
	}
	os.MkdirAll(filepath.Join(dir, "share/keystone"), 0o755)
	os.WriteFile(filepath.Join(dir, MetaFile), []byte(`{"accel":"auto"}`), 0o644)
	if m, err := Check(dir); err != nil || m.NeedsKVM {
		t.Fatalf("Check = %+v, %v; want accel auto", m, err)
	}
	if _, err := Check(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a runner") {
		t.Fatalf("Check(empty dir) = %v; want 'not a runner'", err)
	}
}

func TestStartRecordsPidAndEnvironment(t *testing.T) {
	dir := writeRunner(t, `echo "name=$KEYSTONE_SANDBOX_NAME cwd=$PWD"; exec sleep 30`, "")
	state := t.TempDir()
	p, err := Start(dir, state, []string{"KEYSTONE_SANDBOX_NAME=demo"})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-p.Pid, syscall.SIGKILL)
	if pid, err := ReadPID(state); err != nil || pid != p.Pid {
		t.Fatalf("ReadPID = %d, %v; want %d", pid, err, p.Pid)
	}
	if got := Inspect(p.Pid, state); got != Runner {
		t.Fatalf("Inspect = %v; want Runner", got)
	}
	if got := Inspect(p.Pid, t.TempDir()); got != Stranger {
		t.Fatalf("Inspect with another state dir = %v; want Stranger", got)
	}
	if pgid, _ := syscall.Getpgid(p.Pid); pgid != p.Pid {
		t.Fatalf("runner pgid = %d; want its own group %d", pgid, p.Pid)
	}
	waitFor(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(state, "console.log"))
		return strings.Contains(string(b), "name=demo cwd="+state)
	})
}

func TestStopEscalates(t *testing.T) {
	// Bounds that only elapse when the step is meant to fail are short; the
	// others are long, and Stop returns as soon as the runner is gone.
	short, long := 300*time.Millisecond, time.Minute
	for _, tc := range []struct {
		name, run, shutdown string
		o                   StopOptions
		want                string
	}{
		// The shutdown script finds the runner through the pid file, as a QMP client finds its socket.
		{"graceful", "exec sleep 30", `kill -TERM "$(cat microvm.pid)"`, StopOptions{Grace: long}, "shut down"},
		// The guest powered off so fast that the request's last write failed.
		{"request failed, guest gone", "exec sleep 30", `kill -TERM "$(cat microvm.pid)"; echo broken pipe >&2; exit 1`, StopOptions{Grace: long, Term: long}, "shut down"},
		{"term", "exec sleep 30", "", StopOptions{Grace: long, Term: long}, "terminated (no QMP socket: "},
		// A guest that takes longer than Grace but keeps printing its shutdown is waited for.
		{"slow shutdown", "while [ ! -e stop ]; do sleep 0.05; done; for i in 1 2 3 4 5 6 7 8; do echo shutting down; sleep 0.2; done",
			": > stop", StopOptions{Grace: short, Term: long}, "shut down"},
		{"ignored powerdown", "exec sleep 30", "exit 0", StopOptions{Grace: short, Term: long}, "terminated (the guest did not power off within 300ms)"},
		{"kill", "trap '' TERM; echo trapped; while :; do sleep 0.1; done", "exit 0", StopOptions{Grace: short, Term: short},
			"killed (the guest did not power off within 300ms; SIGTERM did not end it)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRunner(t, tc.run, tc.shutdown)
			state := t.TempDir()
			p, err := Start(dir, state, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tc.run, "trap") {
				waitFor(t, func() bool { // the trap is installed before "trapped"
					b, _ := os.ReadFile(filepath.Join(state, "console.log"))
					return strings.Contains(string(b), "trapped")
				})
			}
			how, err := Stop(dir, state, nil, p.Pid, p.Done(), tc.o)
			if err != nil || !strings.HasPrefix(how, tc.want) {
				t.Fatalf("Stop = %q, %v; want %q…", how, err, tc.want)
			}
			if syscall.Kill(-p.Pid, 0) == nil {
				t.Fatalf("process group %d still has members", p.Pid)
			}
			if pid, _ := ReadPID(state); pid != 0 {
				t.Fatalf("pid file left behind: %d", pid)
			}
		})
	}
}

func TestInspectGoneAfterKill(t *testing.T) {
	dir := writeRunner(t, "exec sleep 30", "")
	state := t.TempDir()
	p, err := Start(dir, state, nil)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(p.Pid, syscall.SIGKILL)
	<-p.Done()
	if got := Inspect(p.Pid, state); got != Gone {
		t.Fatalf("Inspect after SIGKILL = %v; want Gone", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within a minute")
}

func TestCheckNetworks(t *testing.T) {
	dir := writeRunner(t, "exec sleep 1", "")
	os.MkdirAll(filepath.Join(dir, "share/keystone"), 0o755)
	os.WriteFile(filepath.Join(dir, MetaFile), []byte(`{"accel":"kvm","networks":["user"]}`), 0o644)
	m, err := Check(dir)
	if err != nil || !m.NeedsKVM || len(m.Networks) != 1 || m.Networks[0] != "user" {
		t.Fatalf("Check = %+v, %v; want kvm and networks [user]", m, err)
	}
}

func TestMain(m *testing.M) {
	if spec := os.Getenv("RUNNER_TEST_KILLED_LAUNCH"); spec != "" { // a keystone killed after the fork
		dir, state, _ := strings.Cut(spec, "\n")
		p, _, err := launch(dir, state, nil)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(p.Pid)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	os.Exit(m.Run())
}

// A keystone killed between the runner's fork and its pid file leaves no
// runner: the VM would run where stop and the next start cannot find it.
func TestKilledBeforeThePidFileLeavesNoRunner(t *testing.T) {
	state := t.TempDir()
	booted := filepath.Join(state, "booted")
	dir := writeRunner(t, "touch "+booted+"; exec sleep 30", "")
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNNER_TEST_KILLED_LAUNCH="+dir+"\n"+state)
	out, _ := cmd.Output()
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil {
		t.Fatalf("the child said %q", out)
	}
	waitFor(t, func() bool { return !alive(pid) })
	if _, err := os.Stat(booted); err == nil {
		t.Fatal("the runner ran although its pid was never recorded")
	}
	if p, err := ReadPID(state); p != 0 || err != nil {
		t.Fatalf("pid file: %d, %v", p, err)
	}
}

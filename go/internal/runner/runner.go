// Package runner owns the microvm.nix runner contract (docs/runner-contract.md):
// it starts runner/bin/microvm-run in its own session with the state directory
// as working directory, records its pid, tells whether that process is still
// the runner, and shuts it down gracefully before it kills it.
//
// It never decides policy (ports, keys, names): callers pass the environment.
package runner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tidwall/gjson"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Network modes, as a runner receives them in KEYSTONE_NETWORK
// (docs/runner-contract.md), the default first.
const (
	NetworkUser    = "user"    // qemu user networking: no host setup, SSH by port forward
	NetworkTap     = "tap"     // a tap interface the host created
	NetworkMacvtap = "macvtap" // a macvtap on a host interface
	NetworkBridge  = "bridge"  // a tap on a host bridge
)

// Networks are every network mode.
var Networks = []string{NetworkUser, NetworkTap, NetworkMacvtap, NetworkBridge}

// Paths inside a runner directory.
const (
	RunBin      = "bin/microvm-run"
	ShutdownBin = "bin/microvm-shutdown"
	MetaFile    = "share/keystone/runner.json"
)

// Meta is what a runner says about itself in share/keystone/runner.json.
type Meta struct {
	// NeedsKVM is false only when the runner falls back to software emulation.
	NeedsKVM bool
	// Networks are the network modes the runner supports; nil means any.
	Networks []string
}

// Check verifies that dir is a runner and reads its metadata.
func Check(dir string) (Meta, error) {
	st, err := os.Stat(filepath.Join(dir, RunBin))
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return Meta{}, fmt.Errorf("%q is not a runner: no executable %s", dir, RunBin)
	}
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Meta{NeedsKVM: true}, nil
	}
	if err != nil {
		return Meta{}, fmt.Errorf("failed to read the runner's %s: %w", MetaFile, err)
	}
	if !gjson.ValidBytes(data) {
		return Meta{}, fmt.Errorf("runner metadata %q is not valid JSON", filepath.Join(dir, MetaFile))
	}
	m := Meta{NeedsKVM: gjson.GetBytes(data, "accel").String() != "auto"}
	for _, n := range gjson.GetBytes(data, "networks").Array() {
		m.Networks = append(m.Networks, n.String())
	}
	return m, nil
}

// Process is a runner started by this process: its child until it exits.
type Process struct {
	Pid  int
	done chan struct{}
	err  error
}

// Done is closed when the runner has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the runner's exit status, valid after Done is closed.
func (p *Process) Err() error { return p.err }

// Start launches dir/bin/microvm-run in a new session (so terminal signals do
// not reach it and the whole group can be signalled), with stateDir as working
// directory, stdout and stderr appended to the console log, and its pid
// written to microvm.pid. The runner outlives this process.
func Start(dir, stateDir string, env []string) (*Process, error) {
	p, gate, err := launch(dir, stateDir, env)
	if err != nil {
		return nil, err
	}
	if err := WritePID(stateDir, p.Pid); err != nil {
		gate.Close()
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-p.done
		return nil, err
	}
	_, err = io.WriteString(gate, "boot\n")
	gate.Close()
	if err != nil {
		<-p.done
		return nil, fmt.Errorf("failed to start the runner: %w", err)
	}
	return p, nil
}

// gatedRun runs the runner ($0) once a line arrives on stdin. The runner
// must not run before its pid is on disk: a keystone killed in between
// (kill -9, a crash) would leave a VM that stop and start cannot find, on
// the workspace the next start boots another VM on. Its death closes the
// gate, and the shell exits instead. exec keeps the pid; the runner's stdin
// is then at its end, as /dev/null was.
const gatedRun = `read -r line && exec "$0"`

// launch starts the runner's process held at its gate, which it returns.
func launch(dir, stateDir string, env []string) (*Process, io.WriteCloser, error) {
	console, err := os.OpenFile(filepath.Join(stateDir, statedir.ConsoleLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to open the console log: %w", err)
	}
	defer console.Close()
	cmd := exec.Command("/bin/sh", "-c", gatedRun, filepath.Join(dir, RunBin))
	cmd.Dir = stateDir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	gate, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("failed to start the runner %q: %w", filepath.Join(dir, RunBin), err)
	}
	p := &Process{Pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, gate, nil
}

// WritePID records pid in state/microvm.pid atomically.
func WritePID(stateDir string, pid int) error {
	return atomicfile.Write(filepath.Join(stateDir, statedir.PIDFile), []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// ReadPID returns the pid recorded in state/microvm.pid, 0 when there is none.
func ReadPID(stateDir string) (int, error) {
	return ReadPIDFile(filepath.Join(stateDir, statedir.PIDFile))
}

// ReadPIDFile reads a pid file, 0 when there is none.
func ReadPIDFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %q holds %q, not a process id", path, bytes.TrimSpace(data))
	}
	return pid, nil
}

// RemovePID deletes the pid file.
func RemovePID(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, statedir.PIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Liveness is what the evidence says about a recorded pid.
type Liveness int

const (
	// Gone: no such process, or a zombie waiting to be reaped.
	Gone Liveness = iota
	// Runner: the process is alive and its working directory is the state dir.
	Runner
	// Stranger: the pid is alive but belongs to some other program (pid reuse).
	Stranger
)

// Inspect tells whether pid is still the runner of stateDir. The working
// directory is the runner's fingerprint: the contract starts it in state/.
func Inspect(pid int, stateDir string) Liveness {
	if !alive(pid) {
		return Gone
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		// Not ours to read (another user): signal 0 is all the evidence there is.
		if syscall.Kill(pid, 0) == nil {
			return Runner
		}
		return Stranger
	}
	want, err := filepath.EvalSymlinks(stateDir)
	if err != nil {
		want = stateDir
	}
	if cwd == want || cwd == stateDir {
		return Runner
	}
	return Stranger
}

// alive reads /proc/PID/stat: signal 0 succeeds for a zombie, which is dead.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may contain ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	switch data[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/bench/internal/setup"
	"github.com/keystone-agent/keystone/bench/measure"
	"github.com/keystone-agent/keystone/internal/announce"
	"github.com/keystone-agent/keystone/internal/guestconf"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

type bench struct {
	runner, work, bin, home, repo string
	phases                        [][]time.Duration // per raw boot, phaseMarks order
	ksPhases                      [][]time.Duration // per keystone restart, from `start`
}

func newBench(runnerDir string) (*bench, error) {
	d, err := setup.New("keystone-bench-")
	if err != nil {
		return nil, err
	}
	return &bench{runner: runnerDir, work: d.Work, bin: d.Bin, home: d.Home, repo: d.Repo}, nil
}

// showLogs prints the ends of the sandbox's daemon and console logs, for a
// failed run (cleanup removes them).
func (b *bench) showLogs() {
	for _, name := range []string{statedir.DaemonLog, statedir.ConsoleLog} {
		data, _ := os.ReadFile(b.sandboxDir().Path(name))
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(os.Stderr, "== %s (end)\n%s\n", name, strings.Join(lines[max(0, len(lines)-25):], "\n"))
	}
}

func (b *bench) cleanup() {
	b.keystone(b.home, "stop", "app")
	os.RemoveAll(b.work)
}

// keystone runs the helper with a private HOME and returns its stdout.
func (b *bench) keystone(home string, args ...string) (string, error) {
	out, _, err := b.keystoneRusage(home, args...)
	return out, err
}

func (b *bench) keystoneRusage(home string, args ...string) (string, int64, error) {
	c := exec.Command(b.bin, append([]string{"agent"}, args...)...)
	c.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME=", "KEYSTONE_AGENT_RUNNER="+b.runner,
		"KEYSTONE_AGENT_DECLARED="+filepath.Join(b.work, "none.json"))
	c.Dir = b.repo
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	var rss int64
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss
		}
	}
	if err != nil {
		return string(out), rss, fmt.Errorf("keystone %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), rss, nil
}

func (b *bench) sandboxDir() statedir.Sandbox {
	return statedir.Dir(filepath.Join(b.home, ".config/keystone/agent")).Sandbox("app")
}

// startResult is what startToSSH measured; medians over the restarts.
type startResult struct {
	cold, restart, raw, firstExec time.Duration
	// afterListen is start → first command minus the moment dropbear
	// listened in the same boot: the helper's own time after sshd is up.
	afterListen time.Duration
}

// startToSSH: `start --no-attach` + `exec -- true`, cold then restarts, vs
// the same runner started by hand plus an `ssh … true` poll loop. The
// console of keystone's boots is watched too, for the time left after sshd
// listens.
func (b *bench) startToSSH(boots int) (startResult, error) {
	var r startResult
	var restarts, raws, firsts, after []time.Duration
	console := b.sandboxDir().Path(statedir.ConsoleLog)
	for i := 0; i <= boots; i++ {
		var first time.Duration
		stop := make(chan struct{})
		t0 := time.Now()
		phases := watchPhases(console, announce.End(console), t0, stop)
		_, err := b.keystone(b.home, "start", "--no-attach", "--memory", "2048", "--vcpus", "1", b.repo)
		if err == nil {
			first, err = measure.Time(func() error { _, err := b.keystone(b.home, "exec", "--", "true"); return err })
		}
		d := time.Since(t0)
		close(stop)
		seen := <-phases
		if err != nil {
			return r, err
		}
		if i == 0 {
			r.cold = d
		} else {
			restarts = append(restarts, d)
			firsts = append(firsts, first)
			b.ksPhases = append(b.ksPhases, seen)
			if seen[listening] != 0 {
				after = append(after, d-seen[listening])
			}
		}
		if _, err := b.keystone(b.home, "stop", "app"); err != nil {
			return r, err
		}
		if i == 0 {
			continue
		}
		// Interleaved, so load from elsewhere hits both sides alike.
		d, err = b.rawBoot()
		if err != nil {
			return r, err
		}
		raws = append(raws, d)
	}
	r.restart, r.raw, r.firstExec = measure.Median(restarts), measure.Median(raws), measure.Median(firsts)
	if len(after) > 0 {
		r.afterListen = measure.Median(after)
	}
	return r, nil
}

// rawBoot starts the stopped sandbox's runner by hand, with the same
// environment, and polls with OpenSSH until `true` runs.
func (b *bench) rawBoot() (time.Duration, error) {
	sb := b.sandboxDir()
	ent, err := b.entry()
	if err != nil {
		return 0, err
	}
	uid, gid := os.Getuid(), os.Getgid() // as the helper does: the workspace's owner
	if st, err := os.Stat(sb.Workspace()); err == nil {
		uid, gid = int(st.Sys().(*syscall.Stat_t).Uid), int(st.Sys().(*syscall.Stat_t).Gid)
	}
	env := append(os.Environ(),
		"KEYSTONE_SANDBOX_NAME=app", "KEYSTONE_STATE_DIR="+sb.State(), "KEYSTONE_WORKSPACE="+sb.Workspace(),
		"KEYSTONE_GUEST_DIR="+sb.Guest(), "KEYSTONE_SSH_PORT="+strconv.Itoa(ent.SSHPort),
		"KEYSTONE_MEMORY_MB=2048", "KEYSTONE_VCPUS=1", "KEYSTONE_NESTED=0", "KEYSTONE_NETWORK=user",
		fmt.Sprintf("KEYSTONE_HOST_UID=%d", uid), fmt.Sprintf("KEYSTONE_HOST_GID=%d", gid),
		"KEYSTONE_QMP_SOCKET=qmp.sock")
	console := sb.Path(statedir.ConsoleLog)
	var offset int64
	if st, err := os.Stat(console); err == nil {
		offset = st.Size()
	}
	t := time.Now()
	p, err := runner.Start(b.runner, sb.State(), env)
	if err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	phases := watchPhases(console, offset, t, stop)
	defer func() {
		close(stop)
		b.phases = append(b.phases, <-phases)
	}()
	defer func() {
		runner.Stop(b.runner, sb.State(), env, p.Pid, p.Done(), runner.StopOptions{})
	}()
	for time.Since(t) < 3*time.Minute {
		if b.opensshTrue(ent) == nil {
			return time.Since(t), nil
		}
		select {
		case <-p.Done():
			return 0, fmt.Errorf("raw boot: the runner exited (see %s)", sb.Path(statedir.ConsoleLog))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("raw boot: no SSH within 3 minutes")
}

func (b *bench) entry() (registry.Entry, error) {
	root := statedir.Dir(filepath.Join(b.home, ".config/keystone/agent"))
	return registry.New(root.Registry(), root.Lock()).Get("app")
}

// opensshTrue runs `ssh … true` with the sandbox's key and its pinned host key.
func (b *bench) opensshTrue(ent registry.Entry) error {
	return b.openssh(ent, []string{"-o", "ConnectTimeout=2"}, "true")
}

// openssh runs ssh(1) to the sandbox with its key, its pinned host key alone
// and no configuration of the machine's: opts, the destination, command.
func (b *bench) openssh(ent registry.Entry, opts []string, command ...string) error {
	sb := b.sandboxDir()
	kh := filepath.Join(b.work, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", ent.SSHPort, ent.HostKey)), 0o600)
	argv := []string{"-F", "/dev/null", "-i", sb.Path(statedir.ClientKey), "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-p", strconv.Itoa(ent.SSHPort)}
	argv = append(append(append(argv, opts...), "sandbox@127.0.0.1"), command...)
	if out, err := exec.Command("ssh", argv...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// execRoundTrip times `keystone agent exec app -- true` (through the host
// daemon's held connection) against OpenSSH with the same key and pinned
// host key, as a new connection each time and as a client of an OpenSSH
// ControlMaster that holds one, interleaved.
//
// The ControlMaster client also runs exec's own remote command line (cd to
// /workspace, the session environment sourced, then the command): `true`
// alone measures the transport, the same line what the guest does besides.
func (b *bench) execRoundTrip(n int) (ours, fresh, master, masterSame time.Duration, err error) {
	if _, err := b.keystone(b.home, "start", "--no-attach", "--memory", "2048", "--vcpus", "1", b.repo); err != nil {
		return 0, 0, 0, 0, err
	}
	ent, err := b.entry()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	// as `keystone agent exec -- true` sends it (internal/cli/exec.go)
	line, err := sshconn.Command{Argv: []string{"true"}, Dir: sandbox.WorkDir, Source: guestconf.EnvironmentPath}.Line()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	ctl := filepath.Join(b.work, "cm.sock")
	if err := b.openssh(ent, []string{"-o", "ControlMaster=yes", "-o", "ControlPath=" + ctl, "-N", "-f"}); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("ssh ControlMaster: %v", err)
	}
	defer b.openssh(ent, []string{"-o", "ControlPath=" + ctl, "-O", "exit"})
	var o, f, m, ms []time.Duration
	for i := 0; i < n; i++ {
		d, err := measure.Time(func() error { _, err := b.keystone(b.home, "exec", "app", "--", "true"); return err })
		if err != nil {
			return 0, 0, 0, 0, err
		}
		o = append(o, d)
		// no 2 s connect timeout here, as in the boot loop: the guest is up
		if d, err = measure.Time(func() error { return b.openssh(ent, nil, "true") }); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("ssh true: %v", err)
		}
		f = append(f, d)
		if d, err = measure.Time(func() error {
			return b.openssh(ent, []string{"-o", "ControlPath=" + ctl, "-o", "ControlMaster=no"}, "true")
		}); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("ssh true through the ControlMaster: %v", err)
		}
		m = append(m, d)
		if d, err = measure.Time(func() error {
			return b.openssh(ent, []string{"-o", "ControlPath=" + ctl, "-o", "ControlMaster=no"}, line)
		}); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("exec's command line through the ControlMaster: %v", err)
		}
		ms = append(ms, d)
	}
	return measure.Median(o), measure.Median(f), measure.Median(m), measure.Median(ms), nil
}

// listStatus registers n stopped sandboxes in a separate state directory
// and times `list --json` and `status --json`.
func (b *bench) listStatus(n, runs int) (list, status time.Duration, rss int64, err error) {
	home := filepath.Join(b.work, "home-many")
	root := statedir.Dir(filepath.Join(home, ".config/keystone/agent"))
	reg := registry.New(root.Registry(), root.Lock())
	err = reg.Update(func(tx *registry.Tx) error {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("sb%03d", i)
			os.MkdirAll(root.Sandbox(name).Workspace(), 0o700)
			tx.Put(registry.Entry{Name: name, ProjectPath: filepath.Join(b.work, name), MemoryMB: 2048, VCPUs: 1,
				Network: runner.NetworkUser, SyncMode: syncwatch.ModeManual, SSHPort: 3000 + i, Created: time.Now().UTC()})
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	var ls, ss []time.Duration
	for i := 0; i < runs; i++ {
		var out string
		d, err := measure.Time(func() error {
			var err error
			var r int64
			out, r, err = b.keystoneRusage(home, "list", "--json")
			rss = max(rss, r)
			return err
		})
		if err != nil {
			return 0, 0, 0, err
		}
		var arr []json.RawMessage
		if json.Unmarshal([]byte(out), &arr) != nil || len(arr) != n {
			return 0, 0, 0, fmt.Errorf("list --json returned %d entries; want %d", len(arr), n)
		}
		ls = append(ls, d)
		d, err = measure.Time(func() error { _, err := b.keystone(home, "status", fmt.Sprintf("sb%03d", n/2), "--json"); return err })
		if err != nil {
			return 0, 0, 0, err
		}
		ss = append(ss, d)
	}
	return measure.Median(ls), measure.Median(ss), rss, nil
}

package main

import (
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
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/syncwatch"
)

type bench struct {
	runner, work, bin, home, repo string
	phases                        [][]time.Duration // per raw boot, phaseMarks order
}

func newBench(runnerDir string) (*bench, error) {
	d, err := setup.New("keystone-bench-")
	if err != nil {
		return nil, err
	}
	return &bench{runner: runnerDir, work: d.Work, bin: d.Bin, home: d.Home, repo: d.Repo}, nil
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

// startToSSH: `start --no-attach` + `exec -- true`, cold then restarts, vs
// the same runner started by hand plus an `ssh … true` poll loop.
func (b *bench) startToSSH(boots int) (cold, restart, raw, firstExec time.Duration, err error) {
	var restarts, raws, firsts []time.Duration
	for i := 0; i <= boots; i++ {
		var first time.Duration
		d, err := timeIt(func() error {
			if _, err := b.keystone(b.home, "start", "--no-attach", "--memory", "2048", "--vcpus", "1", b.repo); err != nil {
				return err
			}
			first, err = timeIt(func() error { _, err := b.keystone(b.home, "exec", "--", "true"); return err })
			return err
		})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if i == 0 {
			cold = d
		} else {
			restarts = append(restarts, d)
			firsts = append(firsts, first)
		}
		if _, err := b.keystone(b.home, "stop", "app"); err != nil {
			return 0, 0, 0, 0, err
		}
		if i == 0 {
			continue
		}
		// Interleaved, so load from elsewhere hits both sides alike.
		d, err = b.rawBoot()
		if err != nil {
			return 0, 0, 0, 0, err
		}
		raws = append(raws, d)
	}
	return cold, median(restarts), median(raws), median(firsts), nil
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
	sb := b.sandboxDir()
	kh := filepath.Join(b.work, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", ent.SSHPort, ent.HostKey)), 0o600)
	c := exec.Command("ssh", "-F", "/dev/null", "-i", sb.Path(statedir.ClientKey), "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=2", "-p", strconv.Itoa(ent.SSHPort), "sandbox@127.0.0.1", "true")
	return c.Run()
}

func (b *bench) execRoundTrip(n int) (ours, base time.Duration, err error) {
	if _, err := b.keystone(b.home, "start", "--no-attach", "--memory", "2048", "--vcpus", "1", b.repo); err != nil {
		return 0, 0, err
	}
	ent, err := b.entry()
	if err != nil {
		return 0, 0, err
	}
	var o, s []time.Duration
	for i := 0; i < n; i++ {
		d, err := timeIt(func() error { _, err := b.keystone(b.home, "exec", "app", "--", "true"); return err })
		if err != nil {
			return 0, 0, err
		}
		o = append(o, d)
		d, err = timeIt(func() error { return b.opensshTrue(ent) })
		if err != nil {
			return 0, 0, fmt.Errorf("ssh true: %v", err)
		}
		s = append(s, d)
	}
	return median(o), median(s), nil
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
		d, err := timeIt(func() error {
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
		d, err = timeIt(func() error { _, err := b.keystone(home, "status", "sb050", "--json"); return err })
		if err != nil {
			return 0, 0, 0, err
		}
		ss = append(ss, d)
	}
	return median(ls), median(ss), rss, nil
}

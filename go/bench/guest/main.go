// Command guest measures the Debian test guest with the agents against the
// same guest built without them (testguest.Options.NoAgents: the guest as it
// was before the agents), in one run on one machine: build time from a warm
// cache, image sizes, boot to the first SSH command, and the agents' first
// start in the booted guest. It prints medians and ratios; docs/benchmarks.md
// records the results. Numbers are never asserted.
//
//	go run ./bench/guest [-boots 5] [-builds 5]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keystone-agent/keystone/bench/measure"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/testguest"
)

func main() {
	boots := flag.Int("boots", 5, "boots of each guest")
	builds := flag.Int("builds", 5, "warm builds of each guest")
	flag.Parse()
	if err := run(*boots, *builds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ metric, ours, base, ratio, target string }

func run(boots, builds int) error {
	ctx := context.Background()
	withAgents := testguest.Options{Step: func(s string) { fmt.Fprintln(os.Stderr, s) }}
	without := testguest.Options{NoAgents: true}

	// The first build may download the agents (once per agent cache).
	first, err := measure.Time(func() error { _, err := testguest.Build(ctx, withAgents); return err })
	if err != nil {
		return err
	}
	var rows []row
	rows = append(rows, row{"first build in this run (downloads the agents if their cache is empty)", measure.MS(first), "", "", ""})

	// Cold: a fresh guest cache, the agent cache warm.
	coldOurs, coldBase, err := pair(func(o testguest.Options) (time.Duration, error) {
		tmp, err := os.MkdirTemp("", "keystone-bench-guest-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(tmp)
		o.CacheDir = tmp
		return measure.Time(func() error { _, err := testguest.Build(ctx, o); return err })
	}, withAgents, without)
	if err != nil {
		return err
	}
	rows = append(rows, ratioRow("guest build, empty guest cache (agents cached)", coldOurs, coldBase, ""))

	var warmOurs, warmBase []time.Duration
	for i := 0; i < builds; i++ {
		o, b, err := pair(func(o testguest.Options) (time.Duration, error) {
			return measure.Time(func() error { _, err := testguest.Build(ctx, o); return err })
		}, withAgents, without)
		if err != nil {
			return err
		}
		warmOurs, warmBase = append(warmOurs, o), append(warmBase, b)
	}
	rows = append(rows, ratioRow(fmt.Sprintf("guest build, warm cache (median of %d)", builds), measure.Median(warmOurs), measure.Median(warmBase), "≤ 10 s"))

	dirOurs, err := testguest.Build(ctx, withAgents)
	if err != nil {
		return err
	}
	dirBase, err := testguest.Build(ctx, without)
	if err != nil {
		return err
	}
	rows = append(rows,
		sizeRow("initramfs (zstd)", filepath.Join(dirOurs, "share/keystone/initrd"), filepath.Join(dirBase, "share/keystone/initrd")),
		sizeRow("kernel (vmlinux)", filepath.Join(dirOurs, "share/keystone/vmlinux"), filepath.Join(dirBase, "share/keystone/vmlinux")),
		row{"agent tree (shared read-only, not in the image)", mb(treeSize(filepath.Join(dirOurs, "share/keystone/agents"))), "—", "", ""},
	)

	var bootOurs, bootBase []time.Duration
	var agentFirst map[string][]time.Duration
	for i := 0; i < boots; i++ {
		// Interleaved, so load from elsewhere hits both alike.
		d, firsts, err := boot(ctx, dirOurs, i == 0)
		if err != nil {
			return fmt.Errorf("guest with agents: %w", err)
		}
		bootOurs = append(bootOurs, d)
		if firsts != nil {
			agentFirst = firsts
		}
		if d, _, err = boot(ctx, dirBase, false); err != nil {
			return fmt.Errorf("guest without agents: %w", err)
		}
		bootBase = append(bootBase, d)
	}
	rows = append(rows, ratioRow(fmt.Sprintf("runner start → first SSH command (median of %d)", boots), measure.Median(bootOurs), measure.Median(bootBase), "≤ 1.3×"))
	for _, cmd := range agentCommands {
		if ds := agentFirst[cmd]; len(ds) == 2 {
			rows = append(rows, row{"`" + cmd + "` after boot: first, second", measure.MS(ds[0]) + ", " + measure.MS(ds[1]), "", "", ""})
		}
	}

	fmt.Printf("machine: %d CPUs; load average at the end: %s\n", runtime.NumCPU(), loadavg())
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\twith agents\twithout agents\tratio\ttarget")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.metric, r.ours, r.base, r.ratio, r.target)
	}
	return tw.Flush()
}

// pair measures f for both guests, with agents first.
func pair(f func(testguest.Options) (time.Duration, error), ours, base testguest.Options) (time.Duration, time.Duration, error) {
	a, err := f(ours)
	if err != nil {
		return 0, 0, err
	}
	b, err := f(base)
	return a, b, err
}

// agentCommands run once the first boot of the agents guest is up, twice
// each: the first run reads the program over 9p, the second from the
// guest's page cache.
var agentCommands = []string{"claude --version", "codex --version", "gemini --version", "node --version"}

// boot starts runnerDir as the helper would, in a fresh state directory,
// and measures until `true` has run over SSH; with agents it also times
// agentCommands.
func boot(ctx context.Context, runnerDir string, agents bool) (time.Duration, map[string][]time.Duration, error) {
	work, err := os.MkdirTemp("", "keystone-bench-boot-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(work)
	state, ws, guest := filepath.Join(work, "state"), filepath.Join(work, "workspace"), filepath.Join(work, "state", "guest")
	for _, d := range []string{ws, guest} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, nil, err
		}
	}
	hostPriv, hostPub, err := sshconn.GenerateKey()
	if err != nil {
		return 0, nil, err
	}
	clientPriv, clientPub, err := sshconn.GenerateKey()
	if err != nil {
		return 0, nil, err
	}
	os.WriteFile(filepath.Join(guest, "ssh_host_ed25519_key"), hostPriv, 0o600)
	os.WriteFile(filepath.Join(guest, "authorized_keys"), clientPub, 0o644)
	os.WriteFile(filepath.Join(state, "client"), clientPriv, 0o600)
	signer, err := sshconn.LoadSigner(filepath.Join(state, "client"))
	if err != nil {
		return 0, nil, err
	}
	hostKey, err := sshconn.ParseHostKey(hostPub)
	if err != nil {
		return 0, nil, err
	}
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	// The workspace's owner is the guest's sandbox user; as root, another
	// owner, as a user's would be (a root sandbox skips some of the boot).
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4242
		if err := os.Chown(ws, uid, gid); err != nil {
			return 0, nil, err
		}
	}
	env := append(os.Environ(), "KEYSTONE_SANDBOX_NAME=bench", "KEYSTONE_STATE_DIR="+state,
		"KEYSTONE_WORKSPACE="+ws, "KEYSTONE_GUEST_DIR="+guest, "KEYSTONE_SSH_PORT="+strconv.Itoa(port),
		"KEYSTONE_MEMORY_MB=2048", "KEYSTONE_VCPUS=1", "KEYSTONE_NESTED=0", "KEYSTONE_NETWORK=user",
		"KEYSTONE_HOST_UID="+strconv.Itoa(uid), "KEYSTONE_HOST_GID="+strconv.Itoa(gid), "KEYSTONE_QMP_SOCKET=qmp.sock")
	t := sshconn.Target{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), User: "sandbox", Signer: signer, HostKey: hostKey}
	start := time.Now()
	p, err := runner.Start(runnerDir, state, env)
	if err != nil {
		return 0, nil, err
	}
	defer runner.Stop(runnerDir, state, env, p.Pid, p.Done(), runner.StopOptions{})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := sshconn.WaitReady(wctx, t, p.Done()); err != nil {
		return 0, nil, err
	}
	c, err := sshconn.Dial(wctx, t)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	if code, err := sshconn.Exec(wctx, c, sshconn.Command{Argv: []string{"true"}}); err != nil || code != 0 {
		return 0, nil, fmt.Errorf("true over SSH: %d, %v", code, err)
	}
	d := time.Since(start)
	if !agents {
		return d, nil, nil
	}
	// Under TCG on a loaded machine the first Gemini start takes minutes.
	actx, acancel := context.WithTimeout(ctx, 20*time.Minute)
	defer acancel()
	firsts := map[string][]time.Duration{}
	for _, cmd := range agentCommands {
		for i := 0; i < 2; i++ {
			var out bytes.Buffer
			dt, err := measure.Time(func() error {
				code, err := sshconn.Exec(actx, c, sshconn.Command{Argv: []string{"sh", "-c", cmd}, Stdout: &out, Stderr: &out})
				if err == nil && code != 0 {
					err = fmt.Errorf("exit %d: %s", code, out.String())
				}
				return err
			})
			if err != nil {
				return 0, nil, fmt.Errorf("%s: %w", cmd, err)
			}
			firsts[cmd] = append(firsts[cmd], dt)
		}
	}
	return d, firsts, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sizeRow(metric, ours, base string) row {
	a, b := fileSize(ours), fileSize(base)
	return row{metric, mb(a), mb(b), fmt.Sprintf("%.2f×", float64(a)/float64(b)), ""}
}

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// treeSize adds up the regular files under dir (through its link).
func treeSize(dir string) int64 {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0
	}
	var n int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func ratioRow(metric string, ours, base time.Duration, target string) row {
	return row{metric, measure.MS(ours), measure.MS(base), fmt.Sprintf("%.2f×", float64(ours)/float64(base)), target}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keystone-agent/keystone/bench/measure"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// scale boots n idle 512 MB guests straight from the runner (the CLI's
// minimum is 2048 MB, so this goes below it on purpose), then measures the
// exec latency on each and the memory they hold.
func (b *bench) scale(n int) ([]row, error) {
	var rows []row
	type vm struct {
		p      *runner.Process
		state  string
		env    []string
		target sshconn.Target
	}
	var vms []vm
	defer func() {
		for _, v := range vms {
			runner.Stop(b.runner, v.state, v.env, v.p.Pid, v.p.Done(), runner.StopOptions{})
		}
	}()
	priv, pub, err := sshconn.GenerateKey()
	if err != nil {
		return nil, err
	}
	hpriv, hpub, err := sshconn.GenerateKey()
	if err != nil {
		return nil, err
	}
	guest := filepath.Join(b.work, "scale-guest")
	os.MkdirAll(guest, 0o700)
	os.WriteFile(filepath.Join(guest, statedir.HostKey), hpriv, 0o600)
	os.WriteFile(filepath.Join(guest, statedir.AuthorizedKeys), pub, 0o644)
	keyPath := filepath.Join(b.work, "scale-client")
	os.WriteFile(keyPath, priv, 0o600)
	signer, err := sshconn.LoadSigner(keyPath)
	if err != nil {
		return nil, err
	}
	hostKey, err := sshconn.ParseHostKey(hpub)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		state := filepath.Join(b.work, fmt.Sprintf("scale-%02d", i))
		ws := filepath.Join(state, "ws")
		os.MkdirAll(ws, 0o700)
		port := 4000 + i
		env := append(os.Environ(),
			"KEYSTONE_SANDBOX_NAME=scale"+strconv.Itoa(i), "KEYSTONE_STATE_DIR="+state, "KEYSTONE_WORKSPACE="+ws,
			"KEYSTONE_GUEST_DIR="+guest, "KEYSTONE_SSH_PORT="+strconv.Itoa(port),
			"KEYSTONE_MEMORY_MB=512", "KEYSTONE_VCPUS=1", "KEYSTONE_NESTED=0", "KEYSTONE_NETWORK=user",
			fmt.Sprintf("KEYSTONE_HOST_UID=%d", os.Getuid()), fmt.Sprintf("KEYSTONE_HOST_GID=%d", os.Getgid()),
			"KEYSTONE_QMP_SOCKET=qmp.sock")
		p, err := runner.Start(b.runner, state, env)
		if err != nil {
			return nil, err
		}
		t := sshconn.Target{Addr: "127.0.0.1:" + strconv.Itoa(port), User: "sandbox", Signer: signer, HostKey: hostKey}
		vms = append(vms, vm{p, state, env, t})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = sshconn.WaitReady(ctx, t, p.Done())
		cancel()
		if err != nil {
			rows = append(rows, row{fmt.Sprintf("scale: guest %d failed to boot", i+1), err.Error(), "", "", ""})
			break
		}
		if i+1 == 1 || (i+1)%4 == 0 || i+1 == n {
			lat, err := execLatency(vms[len(vms)-1].target)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row{fmt.Sprintf("scale: exec -- true with %d idle 512 MB guests", i+1), measure.MS(lat), "", "", ""})
		}
	}
	var rss int64
	for _, v := range vms {
		rss += procRSS(v.p.Pid)
	}
	if len(vms) > 0 {
		rows = append(rows, row{fmt.Sprintf("scale: RSS per idle guest (%d guests)", len(vms)),
			fmt.Sprintf("%.0f MB", float64(rss)/float64(len(vms))/1024), "", "", ""})
	}
	return rows, nil
}

func execLatency(t sshconn.Target) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < 5; i++ {
		d, err := measure.Time(func() error {
			c, err := sshconn.Dial(context.Background(), t)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = sshconn.Exec(context.Background(), c, sshconn.Command{Argv: []string{"true"}})
			return err
		})
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	return measure.Median(ds), nil
}

// procRSS reads VmRSS (kB) of a process.
func procRSS(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range bytes.Split(data, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}

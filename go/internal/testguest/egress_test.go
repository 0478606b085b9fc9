package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runnerArgs runs bin/microvm-run, in a runner directory dir, against a
// stand-in qemu that prints its arguments, one a line.
func runnerArgs(t *testing.T, dir string, extra ...string) (string, error) {
	t.Helper()
	runner, err := runnerFiles()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.MkdirAll(filepath.Join(dir, shareDir), 0o755)
	os.WriteFile(filepath.Join(dir, runBin), runner[runBin], 0o755)
	os.WriteFile(filepath.Join(dir, networkSh), runner[networkSh], 0o644)
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "qemu-system-x86_64"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755)
	env := contractEnv(t, dir, 2299, 1000, 1001)
	os.WriteFile(filepath.Join(dir, "state/guest/ssh_host_ed25519_key"), []byte("key"), 0o600)
	os.WriteFile(filepath.Join(dir, "state/guest/authorized_keys"), []byte("key"), 0o644)
	cmd := exec.Command(filepath.Join(dir, runBin))
	cmd.Dir = filepath.Join(dir, "state")
	cmd.Env = append(append(env, extra...), "PATH="+fake+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runnerNetdev returns the -netdev value microvm-run gives qemu.
func runnerNetdev(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	out, err := runnerArgs(t, t.TempDir(), extra...)
	if err != nil {
		return out, err
	}
	args := strings.Split(out, "\n")
	for i, a := range args {
		if a == "-netdev" && i+1 < len(args) {
			return args[i+1], nil
		}
	}
	t.Fatalf("no -netdev in %q", out)
	return "", nil
}

// The guest's one way out is the proxy: restricted user networking with the
// relay command for the proxy's address, unless the egress mode is open.
func TestRunnerEgress(t *testing.T) {
	proxyVars := []string{"KEYSTONE_PROXY_ADDRESS=10.0.2.100:3128", "KEYSTONE_PROXY_COMMAND='/opt/key,stone' agent proxy-relay '/s/proxy.sock'"}
	want := "user,id=net0,hostfwd=tcp:127.0.0.1:2299-10.0.2.15:22,guestfwd=tcp:10.0.2.100:3128-cmd:'/opt/key,,stone' agent proxy-relay '/s/proxy.sock',restrict=on"
	for _, mode := range []string{"", "KEYSTONE_EGRESS=allowlist", "KEYSTONE_EGRESS=none"} {
		got, err := runnerNetdev(t, append(proxyVars, mode)...)
		if err != nil || got != want {
			t.Errorf("%s: -netdev %q, %v;\nwant %q", mode, got, err, want)
		}
	}
	got, err := runnerNetdev(t, append(proxyVars, "KEYSTONE_EGRESS=open")...)
	if want := strings.Replace(want, ",restrict=on", "", 1); err != nil || got != want {
		t.Errorf("open: -netdev %q, %v;\nwant %q", got, err, want)
	}
	if out, err := runnerNetdev(t, "KEYSTONE_EGRESS=closed"); err == nil || !strings.Contains(out, "is not allowlist, open or none") {
		t.Errorf("a bad mode: %v %s", err, out)
	}
	// In tap and bridge modes the proxy is on the restricted control NIC.
	out, err := runnerArgs(t, t.TempDir(), append(proxyVars, "KEYSTONE_NETWORK=tap", "KEYSTONE_TAP_INTERFACE=lo", "KEYSTONE_EGRESS=open")...)
	if want := "\nuser,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:2299-10.0.2.15:22,guestfwd=tcp:10.0.2.100:3128-cmd:"; err != nil || !strings.Contains(out, want) {
		t.Errorf("tap: %v, want %q in%s", err, want, out)
	}
}

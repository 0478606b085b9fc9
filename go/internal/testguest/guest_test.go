package testguest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/agents"
	"github.com/keystone-agent/keystone/internal/announce"
)

func TestModuleOrder(t *testing.T) {
	deps := map[string][]string{
		"9p":           {"kernel/fs/9p/9p.ko", "kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko.xz"},
		"9pnet":        {"kernel/net/9p/9pnet.ko"},
		"netfs":        {"kernel/fs/netfs/netfs.ko.xz"},
		"9pnet_virtio": {"kernel/net/9p/9pnet_virtio.ko", "kernel/virtio/virtio.ko", "kernel/net/9p/9pnet.ko"},
		"virtio":       {"kernel/virtio/virtio.ko"},
		"loop_a":       {"a.ko", "b.ko"},
		"b":            {"b.ko", "a.ko"},
	}
	builtin := map[string]bool{"virtio": true}
	got, err := moduleOrder([]string{"9pnet-virtio", "9p"}, deps, builtin)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko", "kernel/fs/netfs/netfs.ko.xz", "kernel/fs/9p/9p.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	if _, err := moduleOrder([]string{"nope"}, deps, builtin); err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Fatalf("got %v; want a missing module error", err)
	}
}

func TestRenderBoot(t *testing.T) {
	d := defaultGuestData()
	d.ModuleDir = "lib/modules/test"
	boot, err := renderGuestFile("boot.tmpl", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`insmod "/lib/modules/test/$m"`,
		"</lib/modules/test/order",
		"mount -t 9p -o \"$opts\" workspace /workspace",
		"mount -t 9p -o \"$opts,ro\" keystone /run/keystone",
		"mount -t 9p -o \"$opts\" home /home/sandbox",
		"umount /run/keystone",
	} {
		if !bytes.Contains(boot, []byte(want)) {
			t.Errorf("boot script lacks %q", want)
		}
	}
	if bytes.Contains(boot, []byte("{{")) {
		t.Error("boot script has an unrendered template action")
	}
	shellSyntax(t, "boot", boot)
}

// The guest announces its sshd on the console with the line the host looks
// for (package announce), rendered, not hard-coded twice.
func TestSSHDAnnounces(t *testing.T) {
	guest, err := guestScripts(agentTree{})
	if err != nil {
		t.Fatal(err)
	}
	sshd := guest["etc/keystone/sshd"]
	if !bytes.Contains(sshd, []byte(`echo "`+announce.Line+`"`)) {
		t.Errorf("etc/keystone/sshd does not write %q to the console:\n%s", announce.Line, sshd)
	}
	if bytes.Contains(sshd, []byte("{{")) {
		t.Error("etc/keystone/sshd has an unrendered template action")
	}
}

// shellSyntax checks a script with the host's sh -n, and with shellcheck
// when it is installed (CI installs it).
func shellSyntax(t *testing.T, name string, script []byte) {
	t.Helper()
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: sh -n: %v: %s", name, err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		return
	}
	cmd = exec.Command("shellcheck", "-s", "sh", "-")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: shellcheck: %v:\n%s", name, err, out)
	}
}

func TestScriptsSyntax(t *testing.T) {
	guest, err := guestScripts(agentTree{m: &agents.Manifest{}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := guestScripts(agentTree{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain["etc/keystone/boot"], []byte("mount -t 9p -o \"trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro\" agents")) || !bytes.Contains(guest["etc/keystone/boot"], []byte("agents /"+agentMount)) {
		t.Error("only a guest with agents mounts the agents share")
	}
	runner, err := runnerFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string][]byte{guest, plain, runner} {
		for name, data := range m {
			if name == "etc/profile" || name == networkSh {
				data = append([]byte("#!/bin/sh\n"), data...) // sourced, not run
			}
			if bytes.HasPrefix(data, []byte("#!/bin/sh")) {
				shellSyntax(t, name, data)
			}
		}
	}
}

// TestGuestTree checks the planned image against what its scripts run.
func TestGuestTree(t *testing.T) {
	h, err := findKernel("")
	if err != nil {
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("-short: the agents are not downloaded")
	}
	ag, err := ensureAgents(context.Background(), Options{Step: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	scripts, err := guestScripts(ag)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := guestTree(context.Background(), h, scripts, ag)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"init", "sbin/init", "bin/sh", "sbin/acpid", "usr/bin/mkpasswd", "sbin/poweroff", "sbin/insmod",
		"usr/sbin/dropbear", "usr/bin/dropbearconvert", "usr/bin/git", "usr/lib/git-core/git-upload-pack", "bin/bash", "etc/profile",
		"lib64/ld-linux-x86-64.so.2", "etc/inittab", "etc/keystone/boot", "etc/keystone/sshd",
		"etc/keystone/poweroff", "etc/acpi/PWRF/00000080", "etc/gitconfig", "dev/console",
		moduleDir + "/order", moduleDir + "/9p.ko", moduleDir + "/virtio_mmio.ko",
		// the agents, their runtime and what they load from the host
		"usr/bin/claude", "usr/bin/codex", "usr/bin/gemini", "usr/bin/node", "usr/bin/npm", "usr/bin/rg",
		"usr/bin/tmux", "lib/x86_64-linux-gnu/libstdc++.so.6", "lib/x86_64-linux-gnu/libgcc_s.so.1",
		"lib/terminfo/t/tmux-256color", "lib/terminfo/x/xterm-256color", "etc/ssl/certs/ca-certificates.crt",
	} {
		if _, ok := tr[p]; !ok {
			t.Errorf("guest image lacks %q", p)
		}
	}
	if n := tr["."]; n == nil || n.perm != 0o755 {
		t.Errorf("guest root is %+v; want a 0755 directory", n)
	}
	checkLinkage(t, ag)
	if n := tr["usr/bin/claude"]; n.kind != 'l' || n.target != "/"+agentMount+"/bin/claude" {
		t.Errorf("usr/bin/claude is %+v; want a link into the agents share", n)
	}
	// The agents stay out of the initramfs: boot under TCG unpacks every byte.
	for p, n := range tr {
		if strings.HasPrefix(p, agentMount+"/") || n.src != "" && strings.HasPrefix(n.src, ag.dir) {
			t.Errorf("%s (from %s) is in the initramfs", p, n.src)
		}
	}
	if n := tr["etc/keystone/boot"]; n.perm != 0o755 {
		t.Errorf("boot script mode %o; want 0755", n.perm)
	}
}

// checkLinkage: the manifest's linkage (how the NixOS guest patches each
// package) says what the programs really are.
func checkLinkage(t *testing.T, ag agentTree) {
	for _, id := range ag.m.PackageIDs() {
		p := ag.m.Packages[id]
		for name, rel := range p.Bin {
			f, err := elf.Open(filepath.Join(ag.dir, "pkg", id, rel))
			got := "" // a script
			if err == nil {
				got = "static"
				for _, prog := range f.Progs {
					if prog.Type == elf.PT_INTERP {
						got = "glibc"
					}
				}
				f.Close()
			}
			if got != p.Linkage {
				t.Errorf("%s of %s: the manifest says linkage %q; the program is %q", name, id, p.Linkage, got)
			}
		}
	}
}

func TestCPIO(t *testing.T) {
	tr := tree{".": {kind: 'd', perm: 0o755}}
	tr.file("etc/motd", 0o644, []byte("hello"))
	tr.symlink("bin/sh", "/bin/busybox")
	tr.add("dev/console", &node{kind: 'c', perm: 0o600, major: 5, minor: 1})
	var b bytes.Buffer
	if err := tr.writeCPIO(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, b.Bytes())
	want := []string{
		". 40755 0",
		"bin 40755 0",
		"bin/sh 120777 12 /bin/busybox",
		"dev 40755 0",
		"dev/console 20600 0",
		"etc 40755 0",
		"etc/motd 100644 5 hello",
		"TRAILER!!! 0 0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// readCPIO lists a newc archive as "name mode size [data]", checking
// alignment and that every entry is owned by root.
func readCPIO(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	off := 0
	field := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field at %d: %v", off, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off < len(b) {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		mode, uid, gid, size, namesize := field(1), field(2), field(3), field(6), field(11)
		if uid != 0 || gid != 0 {
			t.Errorf("entry at %d owned by %d:%d", off, uid, gid)
		}
		name := string(b[off+110 : off+110+namesize-1])
		data := align(off + 110 + namesize)
		line := name + " " + strconv.FormatInt(int64(mode), 8) + " " + strconv.Itoa(size)
		if size > 0 {
			line += " " + string(b[data:data+size])
		}
		out = append(out, line)
		off = align(data + size)
		if name == "TRAILER!!!" {
			break
		}
	}
	return out
}

func TestReplaceable(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	runner := filepath.Join(dir, "runner")
	os.MkdirAll(filepath.Join(runner, shareDir), 0o755)
	os.WriteFile(filepath.Join(runner, markerFile), []byte("x\n"), 0o644)
	other := filepath.Join(dir, "project")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "main.go"), []byte("package main\n"), 0o644)
	for _, p := range []string{filepath.Join(dir, "new"), empty, runner} {
		if err := replaceable(p); err != nil {
			t.Errorf("replaceable(%q) = %v; want nil", p, err)
		}
	}
	if err := replaceable(other); err == nil || !strings.Contains(err.Error(), "not a test guest runner") {
		t.Errorf("replaceable(%q) = %v; want a refusal", other, err)
	}
}

// TestRunnerScripts runs the runner's scripts where they must refuse.
func TestRunnerScripts(t *testing.T) {
	runner, err := runnerFiles()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{runBin, shutdownBin, networkSh} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), runner[name], 0o755)
	}
	env := contractEnv(t, dir, 2222, 1000, 1000)
	os.WriteFile(filepath.Join(dir, "state/guest/ssh_host_ed25519_key"), []byte("key"), 0o600)
	os.WriteFile(filepath.Join(dir, "state/guest/authorized_keys"), []byte("key"), 0o644)
	for _, tc := range []struct {
		name string
		prog string
		drop string
		set  string
		want string
	}{
		{"missing variable", runBin, "KEYSTONE_VCPUS", "", "environment variable KEYSTONE_VCPUS is not set"},
		{"bad number", runBin, "", "KEYSTONE_MEMORY_MB=lots", `KEYSTONE_MEMORY_MB="lots" is not a number`},
		{"bad name", runBin, "", "KEYSTONE_SANDBOX_NAME=a b", "is not a valid sandbox name"},
		{"bad nested", runBin, "", "KEYSTONE_NESTED=yes", "is not 0 or 1"},
		{"macvtap network", runBin, "", "KEYSTONE_NETWORK=macvtap", "the test guest has user, tap and bridge networking"},
		{"tap without a device name", runBin, "", "KEYSTONE_NETWORK=tap", `KEYSTONE_TAP_INTERFACE="" is not a network interface name`},
		{"tap device name with a comma", runBin, "", "KEYSTONE_NETWORK=tap\nKEYSTONE_TAP_INTERFACE=a,b", "is not a network interface name"},
		{"no tap device", runBin, "", "KEYSTONE_NETWORK=tap\nKEYSTONE_TAP_INTERFACE=ks-nonexistent", `no tap device "ks-nonexistent": create it first`},
		{"bridge without a bridge", runBin, "", "KEYSTONE_NETWORK=bridge", `KEYSTONE_BRIDGE="" is not a network interface name`},
		{"no host key", runBin, "", "KEYSTONE_GUEST_DIR=" + dir, "no host key in"},
		{"no QMP socket", shutdownBin, "", "", `no QMP socket at "qmp.sock"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e []string
			for _, kv := range env {
				if tc.drop == "" || !strings.HasPrefix(kv, tc.drop+"=") {
					e = append(e, kv)
				}
			}
			if tc.set != "" {
				e = append(e, strings.Split(tc.set, "\n")...)
			}
			cmd := exec.Command(filepath.Join(dir, tc.prog))
			cmd.Dir = t.TempDir()
			cmd.Env = e
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %v: %s; want a failure saying %q", err, out, tc.want)
			}
		})
	}
}

// contractEnv is the runner environment of docs/runner-contract.md for a
// sandbox whose files are under dir.
func contractEnv(t *testing.T, dir string, port, uid, gid int) []string {
	t.Helper()
	for _, d := range []string{"workspace", "state/guest"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return append(os.Environ(),
		"KEYSTONE_SANDBOX_NAME=test-guest",
		"KEYSTONE_STATE_DIR="+filepath.Join(dir, "state"),
		"KEYSTONE_WORKSPACE="+filepath.Join(dir, "workspace"),
		"KEYSTONE_GUEST_DIR="+filepath.Join(dir, "state/guest"),
		"KEYSTONE_SSH_PORT="+strconv.Itoa(port),
		"KEYSTONE_MEMORY_MB=2048",
		"KEYSTONE_VCPUS=2",
		"KEYSTONE_NESTED=0",
		"KEYSTONE_NETWORK=user",
		"KEYSTONE_HOST_UID="+strconv.Itoa(uid),
		"KEYSTONE_HOST_GID="+strconv.Itoa(gid),
		"KEYSTONE_QMP_SOCKET=qmp.sock",
	)
}

// TestBuildCache builds into an empty cache, then again: the second build
// must find the first and be fast; -out must give a standalone copy.
func TestBuildCache(t *testing.T) {
	if _, err := findKernel(""); err != nil {
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("-short: the agents are not downloaded")
	}
	ctx := context.Background()
	cache := t.TempDir()
	start := time.Now()
	dir, err := Build(ctx, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	start = time.Now()
	again, err := Build(ctx, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	t.Logf("build: cold %v, warm %v", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
	if again != dir {
		t.Errorf("second build returned %q; want the cached %q", again, dir)
	}
	if warm > time.Second {
		t.Errorf("cached build took %v; want well under a second", warm)
	}
	out := filepath.Join(t.TempDir(), "runner")
	for i := 0; i < 2; i++ { // the second time replaces the first
		got, err := Build(ctx, Options{CacheDir: cache, Out: out})
		if err != nil || got != out {
			t.Fatalf("Build with Out = %q, %v; want %q", got, err, out)
		}
	}
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{runBin, shutdownBin, runnerJSON, vmlinuxFile, initrdFile} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil || fi.Size() == 0 {
			t.Errorf("%s after the cache is gone: %v", name, err)
		}
	}
	f, _ := os.Open(filepath.Join(out, runnerJSON))
	data, _ := io.ReadAll(f)
	f.Close()
	if strings.TrimSpace(string(data)) != `{"accel":"auto","networks":["user","tap","bridge"]}` {
		t.Errorf("runner.json = %s", data)
	}
}

// cmd2 runs the runner in dir with a stand-in qemu from fake.
func cmd2(dir string, env []string, fake string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(dir, runBin))
	cmd.Dir = filepath.Join(dir, "state")
	cmd.Env = append(env, "PATH="+fake+":"+os.Getenv("PATH"))
	return cmd.CombinedOutput()
}

// TestRunnerArgs runs bin/microvm-run against a stand-in qemu that prints
// its arguments: the contract's values must reach qemu, paths with commas
// escaped, the SSH port bound to loopback only.
func TestRunnerArgs(t *testing.T) {
	runner, err := runnerFiles()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "odd,dir")
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.MkdirAll(filepath.Join(dir, shareDir), 0o755)
	os.WriteFile(filepath.Join(dir, runBin), runner[runBin], 0o755)
	os.WriteFile(filepath.Join(dir, networkSh), runner[networkSh], 0o644)
	agentTree := filepath.Join(t.TempDir(), "agents,tree")
	os.MkdirAll(agentTree, 0o755)
	os.Symlink(agentTree, filepath.Join(dir, agentsDir))
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "qemu-system-x86_64"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755)
	env := contractEnv(t, dir, 2299, 1000, 1001)
	os.WriteFile(filepath.Join(dir, "state/guest/ssh_host_ed25519_key"), []byte("key"), 0o600)
	os.WriteFile(filepath.Join(dir, "state/guest/authorized_keys"), []byte("key"), 0o644)
	cmd := exec.Command(filepath.Join(dir, runBin))
	cmd.Dir = filepath.Join(dir, "state")
	cmd.Env = append(env, "PATH="+fake+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("microvm-run: %v: %s", err, out)
	}
	args := "\n" + string(out)
	esc := strings.ReplaceAll(dir, ",", ",,")
	for _, want := range []string{
		"\n-M\nmicrovm,",
		"\n-m\n2048\n-smp\n2\n",
		"\nuser,id=net0,hostfwd=tcp:127.0.0.1:2299-10.0.2.15:22,restrict=on\n",
		"\nvirtio-net-device,netdev=net0,mac=" + nameMAC("test-guest") + "\n",
		"\nlocal,id=workspace,path=" + esc + "/workspace,security_model=none\n",
		"\nlocal,id=keystone,path=" + esc + "/state/guest,security_model=none,readonly=on\n",
		"\nlocal,id=home,path=" + esc + "/state/home,security_model=none\n",
		"\nlocal,id=control,path=" + esc + "/state/control,security_model=none,readonly=on\n",
		"\nlocal,id=agents,path=" + strings.ReplaceAll(agentTree, ",", ",,") + ",security_model=none,readonly=on\n",
		"\nunix:qmp.sock,server=on,wait=off\n",
		" keystone.uid=1000 keystone.gid=1001 keystone.name=test-guest keystone.network=user\n",
		",-vmx,-svm\n",
		"\n-kernel\n" + dir + "/share/keystone/vmlinux\n",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu arguments lack %q:%s", want, args)
		}
	}
	// A guest built without agents gets no agents share.
	os.Remove(filepath.Join(dir, agentsDir))
	out, err = cmd2(dir, env, fake)
	if err != nil {
		t.Fatalf("microvm-run without agents: %v: %s", err, out)
	}
	if strings.Contains(string(out), "id=agents") {
		t.Errorf("a runner without agents shares them:\n%s", out)
	}
	for _, d := range []string{"state/home", "state/control"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("microvm-run did not create %s: %v", d, err)
		}
	}
	if strings.Contains(args, "id=ctl") {
		t.Errorf("user mode has a control NIC:%s", args)
	}

	// Issue 10: tap and bridge keep the guest's traffic on their NIC and
	// add the restricted control NIC carrying only the SSH forward.
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"KEYSTONE_NETWORK=tap", "KEYSTONE_TAP_INTERFACE=lo"}, "\ntap,id=net0,ifname=lo,script=no,downscript=no\n"},
		{[]string{"KEYSTONE_NETWORK=bridge", "KEYSTONE_BRIDGE=br-test"}, "\nbridge,id=net0,br=br-test,helper=/"},
	} {
		cmd := exec.Command(filepath.Join(dir, runBin))
		cmd.Dir = filepath.Join(dir, "state")
		cmd.Env = append(append(env, "PATH="+fake+":"+os.Getenv("PATH")), tc.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("microvm-run with %v: %v: %s", tc.env, err, out)
		}
		args := "\n" + string(out)
		for _, want := range []string{
			tc.want,
			"\nvirtio-net-device,netdev=net0,mac=" + nameMAC("test-guest") + "\n",
			"\nuser,id=ctl,restrict=on,hostfwd=tcp:127.0.0.1:2299-10.0.2.15:22\n",
			"\nvirtio-net-device,netdev=ctl,mac=02:6b:73:00:00:01\n",
		} {
			if !strings.Contains(args, want) {
				t.Errorf("%v: qemu arguments lack %q:%s", tc.env, want, args)
			}
		}
		if n := strings.Count(args, "hostfwd="); n != 1 {
			t.Errorf("%v: %d port forwards; want 1, on the control NIC", tc.env, n)
		}
	}
}

// nameMAC is the guest NIC's MAC the runners derive from a sandbox name:
// 02 and the first five bytes of its SHA-256 (lib/default.nix macFor).
func nameMAC(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4])
}

// TestShutdownWhenTheGuestGoesAtOnce runs microvm-shutdown, with each QMP
// client it knows, against a QMP server that goes away as soon as it has
// answered system_powerdown, as qemu does when the guest powers off at once
// (seen on a loaded CI machine): the request worked, so the script must
// succeed, not die of the write that finds the socket closed.
func TestShutdownWhenTheGuestGoesAtOnce(t *testing.T) {
	runner, err := runnerFiles()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "microvm-shutdown")
	if err := os.WriteFile(script, runner[shutdownBin], 0o755); err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{"perl", "python3", "socat"} {
		t.Run(client, func(t *testing.T) {
			path, ok := onlyOnPath(t, client)
			if !ok {
				t.Skipf("%s is not installed", client)
			}
			state := t.TempDir()
			l, err := net.Listen("unix", filepath.Join(state, "qmp.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			served := make(chan error, 1)
			go func() { served <- serveQMPThenGo(l) }()
			cmd := exec.Command(script)
			cmd.Dir, cmd.Env = state, []string{path, "KEYSTONE_QMP_SOCKET=qmp.sock"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("microvm-shutdown: %v: %s", err, out)
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// serveQMPThenGo answers one QMP client up to system_powerdown, then takes
// any further write from it for an error (EPIPE, as from a gone qemu).
func serveQMPThenGo(l net.Listener) error {
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, `{"QMP": {"version": {}, "capabilities": []}}`+"\n")
	for _, want := range []string{"qmp_capabilities", "system_powerdown"} {
		line, err := r.ReadString('\n')
		if err != nil || !strings.Contains(line, want) {
			return fmt.Errorf("QMP server read %q, %v; want %s", line, err, want)
		}
		if want == "system_powerdown" {
			c.(*net.UnixConn).CloseRead()
		}
		io.WriteString(c, `{"return": {}}`+"\n")
	}
	return nil
}

package sandbox_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/testenv"
)

// netnsModeEnv carries the network mode into the test's own re-execution
// inside a fresh network and mount namespace.
const netnsModeEnv = "KEYSTONE_TEST_NETNS_MODE"

// lanPrefix is the LAN the test makes in its namespace: the host side is .1,
// its DHCP server leases .100 to .120.
const lanPrefix = "192.168.77."

// Issue 10, item 2: in tap and bridge mode, start, exec and sync work
// through the control NIC (127.0.0.1:<sshPort>, no guest address needed),
// the guest's own traffic goes out through the tap or bridge, and the
// control NIC lets nothing out. Each mode runs in a network namespace the
// test creates (and a mount namespace, for qemu-bridge-helper's
// /etc/qemu/bridge.conf), by running this test again inside it.
func TestNetworkModesInANamespace(t *testing.T) {
	if mode := os.Getenv(netnsModeEnv); mode != "" {
		networkModeScenario(t, mode)
		return
	}
	testenv.Guest(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: the network namespace test must run")
		}
		t.Skip("creating network namespaces, taps and bridges needs root")
	}
	for _, prog := range []string{"unshare", "ip", "busybox"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s not found (Debian packages util-linux, iproute2, busybox-static)", prog)
		}
	}
	// qemu-bridge-helper reads /etc/qemu/bridge.conf; the namespace mounts
	// its own over /etc/qemu, which must exist to be mounted on
	if _, err := os.Stat("/etc/qemu"); os.IsNotExist(err) {
		if err := os.Mkdir("/etc/qemu", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/etc/qemu") })
	}
	for _, mode := range []string{"tap", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--",
				os.Args[0], "-test.run", "^"+strings.Split(t.Name(), "/")[0]+"$", "-test.v", "-test.count=1", "-test.timeout=15m")
			cmd.Env = append(os.Environ(), netnsModeEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			t.Logf("in the namespace:\n%s", out)
			if err != nil {
				t.Fatalf("the %s scenario failed in its namespace: %v", mode, err)
			}
		})
	}
}

// networkModeScenario runs inside the namespace: it builds the LAN, starts
// a sandbox on it, and checks what goes where.
func networkModeScenario(t *testing.T, mode string) {
	ctx := context.Background()
	name := "net-" + mode
	lan := makeLAN(t, mode, name)
	serveDHCP(t, lan)

	env := testenv.New(t)
	spec := sandbox.Spec{Project: env.Repo(t, name), MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: mode, SyncMode: "manual", Runner: testenv.Guest(t)}
	sb, err := env.Env.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start --network %s: %v", mode, err)
	}
	if got := execOut(t, sb, "hostname"); got != name+"\n" {
		t.Errorf("hostname = %q; want %q", got, name)
	}

	// The guest leases an address on the LAN and talks through it.
	var leased string
	testenv.Await(t, "a DHCP lease on the "+mode, 2*time.Minute, func() string {
		out := execOut(t, sb, "sh", "-c", "ip -4 -o addr show | grep -o '"+lanPrefix+"[0-9]*' || true")
		if leased = strings.TrimSpace(out); leased == "" {
			return "got no " + lanPrefix + "x address in the guest; want one from the namespace's DHCP server"
		}
		return ""
	})
	ln, err := net.Listen("tcp", ":0") // every address of the namespace, loopback too
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String() + " " + strings.TrimSpace(line)
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	execOut(t, sb, "sh", "-c", "echo via-lan | nc -w 10 "+lanPrefix+"1 "+port)
	select {
	case p := <-peers:
		if p != leased+" via-lan" {
			t.Errorf("the LAN listener saw %q; want %q from the guest's leased address", p, leased+" via-lan")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no connection from the guest through the %s", mode)
	}

	// The control NIC carries only the SSH forward: 10.0.2.2, qemu's alias
	// for the host on a user network, must not answer.
	if code := execCode(t, sb, "sh", "-c", "echo via-control | nc -w 3 10.0.2.2 "+port); code == 0 {
		t.Errorf("nc to 10.0.2.2 through the control NIC succeeded; want it refused (restrict=on)")
	}
	select {
	case p := <-peers:
		t.Errorf("the control NIC let a connection out: %q", p)
	case <-time.After(2 * time.Second):
	}

	// Issue 9: the host proxy answers on the control NIC in this mode too.
	out := execOut(t, sb, "bash", "-c", "exec 3<>/dev/tcp/10.0.2.100/3128; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; timeout 10 cat <&3")
	if !strings.Contains(out, "no such route on the keystone proxy") {
		t.Errorf("the proxy through the control NIC answered %q", out)
	}

	// sync takes a commit made in the sandbox into the host's repository
	execOut(t, sb, "sh", "-c", "echo from-the-guest > guest.txt && git add guest.txt && "+
		"GIT_AUTHOR_NAME=Agent GIT_AUTHOR_EMAIL=agent@sandbox.invalid GIT_COMMITTER_NAME=Agent GIT_COMMITTER_EMAIL=agent@sandbox.invalid git commit -qm over-"+mode)
	if _, err := gitsync.Sync(ctx, gitsync.Options{Name: sb.Name, HostRepo: sb.ProjectPath, Workspace: sb.Dir.Workspace()}); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if got := testenv.Git(t, sb.ProjectPath, "log", "-1", "--format=%s"); got != "over-"+mode {
		t.Errorf("host repository's last commit is %q; want %q", got, "over-"+mode)
	}
	stopFreesPort(t, env, sb)
}

// makeLAN makes the guest's LAN in the namespace and returns its host
// interface: tap, the tap device the sandbox's name gives; bridge, br0 with
// qemu-bridge-helper allowed on it.
func makeLAN(t *testing.T, mode, name string) string {
	t.Helper()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// /sys/class/net shows the namespace that mounted sysfs: mount it again
	// here, as `ip netns exec` does, so the runner sees the namespace's tap
	if out, err := exec.Command("mount", "-t", "sysfs", "sysfs", "/sys").CombinedOutput(); err != nil {
		t.Fatalf("mount sysfs: %v: %s", err, out)
	}
	ip("link", "set", "lo", "up")
	var dev string
	switch mode {
	case "tap":
		tap, err := sandbox.TapInterface(name)
		if err != nil {
			t.Fatal(err)
		}
		dev = tap
		ip("tuntap", "add", "name", dev, "mode", "tap", "user", strconv.Itoa(os.Getuid()), "vnet_hdr")
	case "bridge":
		dev = sandbox.DefaultBridge
		ip("link", "add", dev, "type", "bridge")
		conf := t.TempDir()
		if err := os.WriteFile(filepath.Join(conf, "bridge.conf"), []byte("allow "+dev+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "--bind", conf, "/etc/qemu").CombinedOutput(); err != nil {
			t.Fatalf("mount bridge.conf: %v: %s", err, out)
		}
	}
	ip("addr", "add", lanPrefix+"1/24", "dev", dev)
	ip("link", "set", dev, "up")
	return dev
}

// serveDHCP runs busybox udhcpd on dev for the test's lifetime.
func serveDHCP(t *testing.T, dev string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"start %[1]s100\nend %[1]s120\ninterface %[2]s\noption subnet 255.255.255.0\noption router %[1]s1\nlease_file %[3]s/leases\npidfile %[3]s/pid\n",
		lanPrefix, dev, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "leases"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("busybox", "udhcpd", "-f", conf)
	log, _ := os.Create(filepath.Join(dir, "log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("udhcpd:\n%s", out)
		}
	})
}

// execCode runs argv in the sandbox and returns its exit status.
func execCode(t *testing.T, sb *sandbox.Sandbox, argv ...string) int {
	t.Helper()
	c, err := sb.Dial(context.Background())
	if err != nil {
		t.Fatalf("dial %s: %v", sb.Name, err)
	}
	defer c.Close()
	code, err := sshconn.Exec(context.Background(), c, sshconn.Command{Argv: argv, Dir: "/workspace"})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", argv, sb.Name, err)
	}
	return code
}

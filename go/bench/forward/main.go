// Command forward measures `keystone agent forward` against an OpenSSH -L
// forward to the same guest port, in one run, alternating: the throughput of
// one large download, and the time to a first byte on a new connection.
// The server is the web test server (internal/webtest) in the Debian test
// guest. It prints medians and ratios; docs/benchmarks.md records results.
// Numbers are never asserted: a missed target is reported as such.
//
//	go run ./bench/forward [-runner DIR] [-mb 16] [-rounds 3] [-conns 20]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keystone-agent/keystone/bench/internal/setup"
	"github.com/keystone-agent/keystone/internal/testguest"
	"github.com/keystone-agent/keystone/internal/webtest"
)

func main() {
	runnerDir := flag.String("runner", "", "runner directory (default: build the Debian test guest)")
	mb := flag.Int("mb", 16, "MiB per download")
	rounds := flag.Int("rounds", 3, "downloads through each forward")
	conns := flag.Int("conns", 20, "new connections through each forward")
	flag.Parse()
	if err := run(*runnerDir, *mb, *rounds, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	work, bin, home, repo string
}

func run(runnerDir string, mb, rounds, conns int) error {
	if runnerDir == "" {
		var err error
		if runnerDir, err = testguest.Build(context.Background(), testguest.Options{}); err != nil {
			return err
		}
	}
	b, err := newBench()
	if err != nil {
		return err
	}
	defer b.cleanup()
	if _, err := b.keystone("start", "--no-attach", "--runner", runnerDir, "--memory", "2048", "--vcpus", "1", b.repo); err != nil {
		return err
	}
	if err := b.startServer(); err != nil {
		return err
	}
	out, err := b.keystone("forward", "app", "--background", "0:8080")
	if err != nil {
		return err
	}
	ours, err := forwardedAddr(out)
	if err != nil {
		return err
	}
	base, stopSSH, err := b.opensshForward()
	if err != nil {
		return err
	}
	defer stopSSH()

	var oursBps, baseBps []float64
	for i := 0; i < rounds; i++ {
		order := []struct {
			addr string
			into *[]float64
		}{{ours, &oursBps}, {base, &baseBps}}
		if i%2 == 1 { // neither always goes first
			order[0], order[1] = order[1], order[0]
		}
		for _, m := range order {
			bps, err := download(m.addr, int64(mb)<<20)
			if err != nil {
				return fmt.Errorf("download through %s: %w", m.addr, err)
			}
			*m.into = append(*m.into, bps)
			fmt.Fprintf(os.Stderr, "  download through %s: %.2f MB/s\n", m.addr, bps/1e6)
		}
	}
	var oursConn, baseConn []time.Duration
	for i := 0; i < conns; i++ {
		for _, m := range []struct {
			addr string
			into *[]time.Duration
		}{{ours, &oursConn}, {base, &baseConn}} {
			d, err := firstByte(m.addr)
			if err != nil {
				return fmt.Errorf("new connection through %s: %w", m.addr, err)
			}
			*m.into = append(*m.into, d)
		}
	}
	o, s := medianF(oursBps), medianF(baseBps)
	oc, sc := medianD(oursConn), medianD(baseConn)
	fmt.Printf("forward: %d MiB downloads ×%d, %d new connections; host %s, %d CPUs, load %s\n\n", mb, rounds, conns, hostname(), runtime.NumCPU(), loadavg())
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tkeystone forward\tssh -L (OpenSSH)\tratio\ttarget")
	fmt.Fprintf(tw, "throughput, one download\t%.2f MB/s\t%.2f MB/s\t%.2f×\t≥ 0.9×\n", o/1e6, s/1e6, o/s)
	fmt.Fprintf(tw, "new connection → first byte\t%.1f ms\t%.1f ms\t%.2f×\t\n", ms(oc), ms(sc), float64(oc)/float64(sc))
	return tw.Flush()
}

func newBench() (*bench, error) {
	d, err := setup.New("keystone-bench-forward-")
	if err != nil {
		return nil, err
	}
	return &bench{work: d.Work, bin: d.Bin, home: d.Home, repo: d.Repo}, nil
}

func (b *bench) cleanup() {
	b.keystone("stop", "app")
	os.RemoveAll(b.work)
}

// keystone runs the helper with a private HOME and returns its stdout.
func (b *bench) keystone(args ...string) (string, error) {
	c := exec.Command(b.bin, append([]string{"agent"}, args...)...)
	c.Env = append(os.Environ(), "HOME="+b.home, "XDG_CONFIG_HOME=", "KEYSTONE_AGENT_DECLARED="+filepath.Join(b.work, "none.json"))
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("keystone %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// startServer puts the web test server in the workspace and starts it.
func (b *bench) startServer() error {
	dst := filepath.Join(b.home, ".config/keystone/agent/sandboxes/app/workspace", webtest.ServerName)
	c := exec.Command("go", "build", "-ldflags=-s -w", "-o", dst, "./internal/webtest/server")
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the server: %v: %s", err, out)
	}
	_, err := b.keystone("exec", "app", "--", "sh", "-c", webtest.StartInGuest)
	return err
}

// opensshForward runs `ssh -N -L` with the sandbox's key and pinned host key
// (the config ssh-config prints) and returns its local address.
func (b *bench) opensshForward() (string, func(), error) {
	conf, err := b.keystone("ssh-config", "app")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(b.work, "ssh_config")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command("ssh", "-F", path, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
		"-N", "-L", addr+":localhost:8080", "keystone-app")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("ssh -L did not listen on %s within a minute", addr)
}

var forwardLine = regexp.MustCompile(`(?m)^(127\.0\.0\.1:\d+) -> \d+$`)

func forwardedAddr(out string) (string, error) {
	m := forwardLine.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("forward printed %q", out)
	}
	return m[1], nil
}

// download fetches n bytes on a new connection and returns bytes per second.
func download(addr string, n int64) (float64, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/bytes?n=%d", addr, n))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, bufio.NewReaderSize(resp.Body, 256<<10))
	if err != nil || got != n {
		return 0, fmt.Errorf("got %d of %d bytes: %v", got, n, err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// firstByte times a new TCP connection until the first byte of a response.
func firstByte(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medianD(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func hostname() string { h, _ := os.Hostname(); return h }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

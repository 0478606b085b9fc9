// Command proxy measures what the sandbox's host proxy adds to an agent's
// API request, against the same request sent directly, in the same run on
// loopback, and prints medians and the difference.
//
//	cd go && go run ./bench/proxy [-n 2000]
//
// Rows:
//   - request: a kept-alive POST to a TLS stub upstream, directly vs through
//     the proxy's provider route (placeholder replaced, TLS to the upstream);
//   - new connection: the same, each on a new connection; the proxy's is
//     handed over by `keystone agent proxy-relay` as qemu's guestfwd does
//     (one process per connection; qemu's own fork is not included);
//   - first event: time to the first server-sent event of a streamed
//     answer whose next event comes 100 ms later (unbuffered: equal).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keystone-agent/keystone/internal/credentials"
	"github.com/keystone-agent/keystone/internal/egress"
	"github.com/keystone-agent/keystone/internal/proxy"
)

func main() {
	n := flag.Int("n", 2000, "requests per row and path (the median is reported)")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const body = `{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`

func run(n int) error {
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message_start\ndata: {}\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
			io.WriteString(w, "event: message_stop\ndata: {}\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"type":"message","content":[{"type":"text","text":"hi"}]}`)
	}))
	api.StartTLS()
	defer api.Close()
	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())

	scratch, err := os.MkdirTemp("", "keystone-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	keystone := filepath.Join(scratch, "keystone")
	if out, err := exec.Command("go", "build", "-o", keystone, "./cmd/keystone").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}

	creds, _, _ := credentials.Parse([]byte("ANTHROPIC_API_KEY=sk-ant-bench\n"))
	pol, _ := egress.Compile(egress.Settings{Mode: egress.Allowlist})
	srv, err := proxy.New(proxy.Options{
		Sandbox: "bench", Policy: func() *egress.Policy { return pol }, Credentials: creds,
		Upstreams: map[string]string{"anthropic": api.URL}, RootCAs: pool,
	})
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(tcp)
	sock := filepath.Join(scratch, "proxy.sock")
	fdl, err := proxy.Listen(sock)
	if err != nil {
		return err
	}
	go srv.Serve(fdl)
	defer srv.Shutdown(context.Background())

	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(pool), MaxIdleConnsPerHost: 4}}
	viaProxy := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	directURL := api.URL + "/v1/messages"
	proxyURL := "http://" + tcp.Addr().String() + "/anthropic/v1/messages"
	header := http.Header{"X-Api-Key": {credentials.Placeholder("ANTHROPIC_API_KEY")}, "Content-Type": {"application/json"}}

	post := func(c *http.Client, url string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			start := time.Now()
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header = header.Clone()
			resp, err := c.Do(req)
			if err != nil {
				return 0, err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return 0, fmt.Errorf("status %d", resp.StatusCode)
			}
			return time.Since(start), err
		}
	}
	// A new connection each time: directly, and through the relay.
	fresh := func() (time.Duration, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(pool), DisableKeepAlives: true}}
		return post(c, directURL)()
	}
	relayed := func() (time.Duration, error) {
		start := time.Now()
		guest, err := relay(keystone, sock)
		if err != nil {
			return 0, err
		}
		defer guest.Close()
		req, _ := http.NewRequest("POST", "http://"+proxy.GuestAddress+"/anthropic/v1/messages", strings.NewReader(body))
		req.Header = header.Clone()
		req.Close = true
		if err := req.Write(guest); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(guest), req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), nil
	}
	firstEvent := func(c *http.Client, url string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			start := time.Now()
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header = header.Clone()
			resp, err := c.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "event:") {
				return 0, fmt.Errorf("first line %q: %v", line, err)
			}
			d := time.Since(start)
			io.Copy(io.Discard, resp.Body)
			return d, nil
		}
	}

	rows := []struct {
		name      string
		n         int
		base, ksp func() (time.Duration, error)
	}{
		{"request (kept-alive)", n, post(direct, directURL), post(viaProxy, proxyURL)},
		{"new connection (relay process)", n / 10, fresh, relayed},
		{"first streamed event", 20, firstEvent(direct, api.URL+"/v1/stream"), firstEvent(viaProxy, "http://"+tcp.Addr().String()+"/anthropic/v1/stream")},
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\truns\tdirect median\tproxy median\tadded\tproxy p90\t")
	for _, r := range rows {
		var a, b []time.Duration
		for i := 0; i < r.n+r.n/10; i++ { // interleaved; the first tenth warms up
			da, err := r.base()
			if err != nil {
				return fmt.Errorf("%s, direct: %w", r.name, err)
			}
			db, err := r.ksp()
			if err != nil {
				return fmt.Errorf("%s, proxy: %w", r.name, err)
			}
			if i >= r.n/10 {
				a, b = append(a, da), append(b, db)
			}
		}
		ma, mb := median(a), median(b)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", r.name, len(a), ms(ma), ms(mb), ms(mb-ma), ms(pct(b, 90)))
	}
	return tw.Flush()
}

// relay does what qemu does for one guest connection: a socket pair, the
// relay program with one end on its stdin, the other end for the guest.
func relay(keystone, sock string) (net.Conn, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	guest, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, err
	}
	slirp, err := l.Accept()
	if err != nil {
		guest.Close()
		return nil, err
	}
	f, err := slirp.(*net.TCPConn).File()
	slirp.Close()
	if err != nil {
		guest.Close()
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(keystone, "agent", "proxy-relay", "--sandbox", "bench", sock)
	cmd.Stdin = f
	if err := cmd.Run(); err != nil {
		guest.Close()
		return nil, fmt.Errorf("proxy-relay: %w", err)
	}
	return guest, nil
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

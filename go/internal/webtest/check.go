package webtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Concurrent is how many connections Check holds open at once.
const Concurrent = 100

// Check runs every check against the server reached at addr (host:port).
func Check(t *testing.T, addr string) {
	t.Helper()
	base := "http://" + addr
	client := &http.Client{Timeout: 2 * time.Minute}
	t.Run("plain", func(t *testing.T) {
		if got := get(t, client, base+"/hello"); got != Hello {
			t.Errorf("GET /hello = %q; want %q", got, Hello)
		}
	})
	t.Run("streamed", func(t *testing.T) { checkStream(t, client, base) })
	t.Run("websocket", func(t *testing.T) { checkWebSocket(t, addr) })
	t.Run("concurrent", func(t *testing.T) { checkConcurrent(t, base) })
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return string(b)
}

// checkStream reads the first part of a response the server has not
// finished: it arrives only if the forward passes bytes on as they come.
func checkStream(t *testing.T, c *http.Client, base string) {
	resp, err := c.Get(base + "/stream")
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("the first part of /stream = %q, %v; want \"first\\n\" before the response ends", line, err)
	}
	get(t, c, base+"/release")
	if rest, err := io.ReadAll(r); err != nil || string(rest) != "second\n" {
		t.Fatalf("the rest of /stream = %q, %v; want \"second\\n\"", rest, err)
	}
}

// checkWebSocket upgrades a connection and exchanges frames both ways.
func checkWebSocket(t *testing.T, addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", addr, key)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading the upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key) {
		t.Fatalf("upgrade answered %s, accept %q; want 101 and %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(key))
	}
	for _, msg := range []string{"ping", "a second message"} {
		mask := []byte{1, 2, 3, 4}
		frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask...)
		for i := range len(msg) {
			frame = append(frame, msg[i]^mask[i%4])
		}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		op, payload, err := readFrame(r)
		if err != nil || op != 1 || string(payload) != msg {
			t.Fatalf("echo of %q = op %d %q, %v", msg, op, payload, err)
		}
	}
}

// checkConcurrent holds Concurrent connections open at once: the server
// answers none until all have arrived.
func checkConcurrent(t *testing.T, base string) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 3 * time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, Concurrent)
	for range Concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fmt.Sprintf("%s/gather?n=%d", base, Concurrent))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("all %d\n", Concurrent); err != nil || string(b) != want {
				errs <- fmt.Errorf("got %q, %v; want %q", b, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d concurrent requests failed", n, Concurrent)
	}
}

// ServerName is the server's file name in the guest's /workspace.
const ServerName = "webtest-server"

// StartInGuest is the shell command, run in /workspace, that starts the
// server on guest port 8080 in its own session (it outlives the SSH session)
// and returns once it answers, or fails after three minutes.
const StartInGuest = "setsid ./" + ServerName + " -addr 127.0.0.1:8080 </dev/null >/tmp/webtest.log 2>&1 &" +
	" for i in $(seq 360); do wget -q -O /dev/null http://127.0.0.1:8080/hello && exit 0; sleep 0.5; done;" +
	" cat /tmp/webtest.log; exit 1"

// BuildServer builds the server as a static program at dst, to run in the
// test guest.
func BuildServer(t testing.TB, dst string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", dst, "github.com/keystone-agent/keystone/internal/webtest/server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build the web test server: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatal(err)
	}
}

// Package webtest is a small web server and the checks a forwarded port must
// pass: a plain response, a streamed one, a WebSocket upgrade with an echo,
// and many connections at once. The server runs on the host for fast tests
// and, built by BuildServer, inside the test guest for end-to-end ones and
// the benchmark. It is imported by tests and benchmarks only.
package webtest

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Hello is the body of GET /hello.
const Hello = "hello from the sandbox\n"

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Handler serves:
//
//	/hello         Hello
//	/stream        "first\n", flushed; the rest only after GET /release
//	/release       lets the waiting /stream finish
//	/bytes?n=N     N zero bytes (throughput)
//	/gather?n=N    answers "all N\n" once N requests wait at the same time
//	/ws            a WebSocket upgrade, then each frame echoed back
func Handler() http.Handler {
	mux := http.NewServeMux()
	var g gathering
	release := make(chan struct{}, 1)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, Hello) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
			io.WriteString(w, "second\n")
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		select {
		case release <- struct{}{}:
		default:
		}
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 256<<10)
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/gather", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		select {
		case <-g.arrive(n):
			fmt.Fprintf(w, "all %d\n", n)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/ws", websocketEcho)
	return mux
}

// websocketEcho answers the upgrade, then echoes unfragmented frames of up
// to 125 bytes, unmasked as a server must send them, until a close frame.
func websocketEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		AcceptKey(r.Header.Get("Sec-WebSocket-Key")))
	rw.Flush()
	for {
		op, payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		rw.Write(append([]byte{0x80 | op, byte(len(payload))}, payload...))
		rw.Flush()
		if op == 0x8 {
			return
		}
	}
}

// AcceptKey is the Sec-WebSocket-Accept for a client's key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// readFrame reads one short frame, unmasking a client's payload.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[1] & 0x7f)
	if hdr[0]&0x80 == 0 || n > 125 {
		return 0, nil, fmt.Errorf("only short unfragmented frames are supported")
	}
	var mask [4]byte
	masked := hdr[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return hdr[0] & 0x0f, payload, nil
}

// gathering is a barrier: the n-th request to arrive releases all n.
type gathering struct {
	mu      sync.Mutex
	waiting int
	all     chan struct{}
}

func (g *gathering) arrive(n int) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.all == nil {
		g.all = make(chan struct{})
	}
	all := g.all
	if g.waiting++; g.waiting >= n {
		close(all)
		g.waiting, g.all = 0, nil
	}
	return all
}

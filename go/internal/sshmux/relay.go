package sshmux

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"
)

// clientRequests are the channel requests a session needs (RFC 4254 §6): the
// daemon passes these on and refuses every other. Port, agent and X11
// forwarding are not requests of a session channel the client can open here:
// only "session" channels are ever opened.
var clientRequests = map[string]bool{
	"pty-req": true, "env": true, "exec": true, "shell": true,
	"window-change": true, "signal": true,
}

// relay carries one session between a socket and an SSH channel on the held
// connection until either ends.
type relay struct {
	sock  net.Conn
	in    *bufio.Reader
	out   *frameWriter
	ch    ssh.Channel
	reqs  <-chan *ssh.Request
	stdin *buffer // from the client, not yet written to the channel
	// credit for the client's stdout and stderr buffers
	stdout, stderr *credit
}

func newRelay(sock net.Conn, in *bufio.Reader, out *frameWriter, ch ssh.Channel, reqs <-chan *ssh.Request) *relay {
	r := &relay{sock: sock, in: in, out: out, ch: ch, reqs: reqs,
		stdout: newCredit(window), stderr: newCredit(window)}
	r.stdin = newBuffer(func(n int) { r.out.write(frameCredit, encodeCredit(streamData, uint32(n))) })
	return r
}

// run relays until the session is over and returns once every goroutine it
// started has ended; the channel and the socket are closed then.
func (r *relay) run() {
	var wg sync.WaitGroup
	var outputs, guest sync.WaitGroup
	wg.Add(5)
	outputs.Add(2)
	guest.Add(1)
	go func() { defer wg.Done(); r.fromClient() }()
	go func() { defer wg.Done(); r.toChannel() }()
	go func() { defer wg.Done(); defer outputs.Done(); r.copyOut(frameData, r.ch, r.stdout) }()
	go func() { defer wg.Done(); defer outputs.Done(); r.copyOut(frameStderr, r.ch.Stderr(), r.stderr) }()
	go func() { defer wg.Done(); defer guest.Done(); r.fromGuest() }()
	// SSH's EOF ends stdout and stderr together.
	outputs.Wait()
	r.out.write(frameEOF)
	// The guest's requests end when the channel is closed: everything it
	// sent has been relayed, so the client can finish.
	guest.Wait()
	r.out.write(frameClose)
	r.end()
	wg.Wait()
}

// end stops every goroutine: closing the channel ends the output copies and
// the guest's requests, closing the socket ends fromClient.
func (r *relay) end() {
	r.ch.Close()
	r.sock.Close()
	r.stdout.close()
	r.stderr.close()
	r.stdin.end()
}

// fromClient reads the client's frames: stdin, requests, credit, EOF, close.
func (r *relay) fromClient() {
	defer r.end()
	for {
		t, p, err := readFrame(r.in)
		if err != nil {
			return
		}
		switch t {
		case frameData:
			if !r.stdin.put(p) {
				return // more than it was granted, or after EOF
			}
		case frameEOF:
			r.stdin.end()
		case frameCredit:
			stream, n, err := decodeCredit(p)
			if err != nil {
				return
			}
			c := r.stdout
			if stream == streamStderr {
				c = r.stderr
			}
			if !c.add(n) {
				return
			}
		case frameRequest:
			if !r.request(p) {
				return
			}
		case frameClose:
			return
		default:
			return
		}
	}
}

// request passes one of the client's requests on and answers it; false ends
// the session (a malformed frame, or the socket or channel is gone).
func (r *relay) request(p []byte) bool {
	q, err := decodeRequest(p)
	if err != nil {
		return false
	}
	ok := false
	if clientRequests[q.name] {
		if ok, err = r.ch.SendRequest(q.name, q.wantReply, q.payload); err != nil {
			return false
		}
	}
	if !q.wantReply {
		return true
	}
	reply := []byte{0}
	if ok {
		reply[0] = 1
	}
	return r.out.write(frameReply, reply) == nil
}

// toChannel writes the client's stdin into the channel, then EOF.
func (r *relay) toChannel() {
	buf := make([]byte, maxChunk)
	for {
		n, err := r.stdin.Read(buf)
		if n > 0 {
			if _, werr := r.ch.Write(buf[:n]); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			r.ch.CloseWrite()
			return
		}
	}
}

// copyOut sends one output stream of the channel to the client, within the
// credit the client grants.
func (r *relay) copyOut(t byte, src io.Reader, c *credit) {
	buf := make([]byte, maxChunk)
	for {
		max, ok := c.take(maxChunk)
		if !ok {
			return
		}
		n, err := src.Read(buf[:max])
		c.refund(max - n) // else short reads shrink the window to nothing
		if n > 0 && r.out.write(t, buf[:n]) != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

// fromGuest relays the guest's requests on the channel. Only the exit status
// and exit signal matter to a session; each is checked before it is passed
// on, because x/crypto on the client side parses them without checking
// (a short exit-status would make it panic). Requests that want a reply get a
// refusal, as x/crypto gives them.
func (r *relay) fromGuest() {
	for req := range r.reqs {
		if req.WantReply {
			req.Reply(false, nil)
		}
		if !validExit(req.Type, req.Payload) {
			continue
		}
		b, err := request{name: req.Type, payload: req.Payload}.encode()
		if err == nil {
			r.out.write(frameRequest, b)
		}
	}
}

// validExit reports whether a request is an exit-status or exit-signal that
// the client can parse (RFC 4254 §6.10).
func validExit(name string, payload []byte) bool {
	switch name {
	case "exit-status":
		return len(payload) == 4
	case "exit-signal":
		var sig struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}
		return ssh.Unmarshal(payload, &sig) == nil
	}
	return false
}

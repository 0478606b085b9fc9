package sshmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The protocol on the socket. One socket connection carries one SSH session
// channel. The client sends frameOpen, the daemon answers frameOpened or
// frameRefused, and then both relay the channel's traffic until frameClose
// (or the socket ends, which means the same, without an exit status):
//
//	frame = type (1 byte) | payload length (uint32, big endian) | payload
//
// Each type has its own payload bound, checked before anything is allocated:
// the daemon parses what any local process of the owner sends, and the
// client what the daemon relays from the guest.
const (
	frameOpen    byte = 'o' // client: open a session; payload: protocolVersion
	frameOpened  byte = 'O' // daemon: the session is open; payload: address length, address, pinned host key (SSH wire format)
	frameRefused byte = 'x' // daemon: no session; payload: why, one line
	framePending byte = 'p' // daemon: still opening (making a spare connection); no payload
	frameRequest byte = 'r' // a channel request; payload: want reply (0/1), name length, name, request payload
	frameReply   byte = 'y' // daemon: the answer to the client's last request that wanted one; payload: 0/1
	frameData    byte = 'd' // stdin (client) or stdout (daemon)
	frameStderr  byte = 'e' // daemon: stderr
	frameCredit  byte = 'w' // the receiver of a stream may be sent n more bytes; payload: stream, uint32 n
	frameEOF     byte = 'f' // no more data: stdin (client), stdout and stderr (daemon)
	frameClose   byte = 'c' // the session is over
)

// protocolVersion is the payload of frameOpen; a daemon refuses another.
const protocolVersion = 1

// Streams named by frameCredit.
const (
	streamData   byte = 0 // stdin or stdout: frameData
	streamStderr byte = 1 // frameStderr
)

// Bounds.
const (
	// maxChunk bounds one data frame, as SSH's own packets are 32 KiB.
	maxChunk = 32 << 10
	// window is how many bytes of one stream may be in flight: the
	// receiver buffers at most this much and grants more as it is read.
	window = 256 << 10
	// maxRequestPayload bounds a request's payload: x/crypto refuses SSH
	// packets over 256 KiB, so a longer exec command line fails anyway.
	maxRequestPayload = 256 << 10
	// maxRequestName bounds a request's name ("window-change" is 13).
	maxRequestName = 64
	// maxText bounds frameRefused and the address in frameOpened.
	maxText = 1 << 10
	// maxAddr bounds the address in frameOpened, maxKey the host key (an
	// RSA key of 16384 bits is 2 KiB).
	maxAddr = 255
	maxKey  = 4 << 10
)

// ErrProtocol is wrapped by every error about bytes that break the protocol.
var ErrProtocol = errors.New("sshmux: protocol violation")

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// maxPayload is the largest payload a frame of type t may carry, -1 for an
// unknown type.
func maxPayload(t byte) int {
	switch t {
	case frameOpen, frameReply:
		return 1
	case frameEOF, frameClose, framePending:
		return 0
	case frameCredit:
		return 5
	case frameRefused:
		return maxText
	case frameOpened:
		return 1 + maxAddr + maxKey
	case frameData, frameStderr:
		return maxChunk
	case frameRequest:
		return 2 + maxRequestName + maxRequestPayload
	}
	return -1
}

// readFrame reads one frame, checking its type and length before it
// allocates the payload.
func readFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t, n := h[0], binary.BigEndian.Uint32(h[1:])
	limit := maxPayload(t)
	if limit < 0 {
		return 0, nil, protocolErrorf("unknown frame type %#x", t)
	}
	if n > uint32(limit) {
		return 0, nil, protocolErrorf("frame %q of %d bytes; at most %d", t, n, limit)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, p, nil
}

// appendFrame appends one encoded frame to b.
func appendFrame(b []byte, t byte, payload ...[]byte) []byte {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	b = append(b, t)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

// request is one channel request as frameRequest carries it.
type request struct {
	name      string
	wantReply bool
	payload   []byte
}

func (q request) encode() ([]byte, error) {
	if len(q.name) == 0 || len(q.name) > maxRequestName {
		return nil, fmt.Errorf("sshmux: request name %q is empty or longer than %d bytes", q.name, maxRequestName)
	}
	if len(q.payload) > maxRequestPayload {
		return nil, fmt.Errorf("sshmux: %s request of %d bytes; at most %d", q.name, len(q.payload), maxRequestPayload)
	}
	want := byte(0)
	if q.wantReply {
		want = 1
	}
	b := append([]byte{want, byte(len(q.name))}, q.name...)
	return append(b, q.payload...), nil
}

func decodeRequest(p []byte) (request, error) {
	if len(p) < 2 || p[0] > 1 {
		return request{}, protocolErrorf("malformed request")
	}
	n := int(p[1])
	if n == 0 || n > maxRequestName || len(p) < 2+n {
		return request{}, protocolErrorf("malformed request name")
	}
	return request{name: string(p[2 : 2+n]), wantReply: p[0] == 1, payload: p[2+n:]}, nil
}

// encodeOpened is frameOpened's payload: the sandbox's address, for errors,
// and the host key the daemon pinned, for the client to check against its own.
func encodeOpened(addr string, hostKey []byte) []byte {
	addr = addr[:min(len(addr), maxAddr)]
	return append(append([]byte{byte(len(addr))}, addr...), hostKey[:min(len(hostKey), maxKey)]...)
}

func decodeOpened(p []byte) (addr string, hostKey []byte, err error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, protocolErrorf("malformed open answer")
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], nil
}

func encodeCredit(stream byte, n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{stream}, n)
}

func decodeCredit(p []byte) (byte, uint32, error) {
	if len(p) != 5 || p[0] > streamStderr {
		return 0, 0, protocolErrorf("malformed credit")
	}
	return p[0], binary.BigEndian.Uint32(p[1:]), nil
}

func decodeBool(p []byte) (bool, error) {
	if len(p) != 1 || p[0] > 1 {
		return false, protocolErrorf("malformed flag")
	}
	return p[0] == 1, nil
}

// frameWriter writes whole frames from several goroutines.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (fw *frameWriter) write(t byte, payload ...[]byte) error {
	n := 5
	for _, p := range payload {
		n += len(p)
	}
	b := appendFrame(make([]byte, 0, n), t, payload...)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(b)
	return err
}

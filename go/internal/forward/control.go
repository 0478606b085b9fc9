package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
	"time"

	"github.com/keystone-agent/keystone/internal/ownersock"
)

// The control protocol of the daemon's socket (statedir.ForwardSocket): one
// JSON request line per connection, one JSON response line back.
const (
	OpAdd    = "add"    // bind Forwards and keep them
	OpList   = "list"   // the forwards kept now
	OpCancel = "cancel" // end the forwards on HostPorts; all when empty
)

// Bounds: the daemon reads what any process of the owner sends.
const (
	maxMessage  = 64 << 10
	MaxForwards = 256 // kept by one daemon at once
	askTimeout  = 10 * time.Second
)

// Request is one request to the daemon.
type Request struct {
	Op        string `json:"op"`
	Forwards  []Spec `json:"forwards,omitempty"`
	HostPorts []int  `json:"hostPorts,omitempty"`
}

// Response answers a Request: the forwards added, kept or cancelled, or why not.
type Response struct {
	Forwards []Spec `json:"forwards"`
	Error    string `json:"error,omitempty"`
	// InUse is the host port that was taken when an add failed for that reason.
	InUse int `json:"inUse,omitempty"`
}

// ErrNoDaemon means no host daemon answers on the socket: the sandbox is
// stopped, or its daemon was started by a keystone without forwards.
var ErrNoDaemon = errors.New("no host daemon answers")

// RefusedError is the daemon's reason for refusing a request.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// Ask sends req to the daemon listening on socket and returns its answer.
func Ask(ctx context.Context, socket string, req Request) ([]Spec, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	c, err := ownersock.Dial(ctx, socket)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w on %q", ErrNoDaemon, socket)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := writeMessage(c, req); err != nil {
		return nil, err
	}
	var resp Response
	if err := readMessage(c, &resp); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("the host daemon did not answer within %v", askTimeout)
		}
		return nil, err
	}
	switch {
	case resp.InUse != 0:
		return nil, &PortInUseError{Port: resp.InUse}
	case resp.Error != "":
		return nil, &RefusedError{Reason: resp.Error}
	}
	return resp.Forwards, nil
}

func writeMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// readMessage reads one line of at most maxMessage bytes into v.
func readMessage(r io.Reader, v any) error {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxMessage), 4096).ReadBytes('\n')
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("message cut short or longer than %d bytes", maxMessage)
		}
		return err
	}
	return json.Unmarshal(line, v)
}

// answer reads one request from c, lets handle answer it, and writes the answer.
func answer(c net.Conn, handle func(Request) Response) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(askTimeout))
	var req Request
	if err := readMessage(c, &req); err != nil {
		return writeMessage(c, Response{Error: "bad request: " + err.Error()})
	}
	return writeMessage(c, handle(req))
}

package forward

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshconn/sshdtest"
	"github.com/keystone-agent/keystone/internal/webtest"
)

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"3000": {3000, 3000}, "8080:3000": {8080, 3000}, "0:5173": {0, 5173}, "65535:1": {65535, 1},
	} {
		if got, err := ParseSpec(in); err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "app", "8080:", ":3000", "65536", "1:2:3", "-1", "+80", "8080:0", " 80", "0x50", "123456"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) succeeded; want an error", bad)
		}
	}
}

func TestListenIsAllOrNone(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port
	free := freePort(t)
	_, err = Listen([]Spec{{free, 1}, {busy, 2}})
	var inUse *PortInUseError
	if !errors.As(err, &inUse) || inUse.Port != busy {
		t.Fatalf("Listen = %v; want PortInUseError for %d", err, busy)
	}
	// the first port was given back
	ls, err := Listen([]Spec{{free, 1}, {0, 2}})
	if err != nil {
		t.Fatalf("the first port was kept after the failure: %v", err)
	}
	for _, l := range ls {
		if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() || ip.To4() == nil {
			t.Errorf("listening on %v; want 127.0.0.1 only", ip)
		}
		l.Close()
	}
	if ls[1].HostPort == 0 {
		t.Error("a host port of 0 was not filled in")
	}
	if _, err := Listen([]Spec{{free, 1}, {free, 2}}); err == nil {
		t.Error("the same host port twice was accepted")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A forward through each real SSH server (the NixOS guest's OpenSSH and the
// test guest's dropbear) passes every web check: plain, streamed, WebSocket,
// 100 connections at once.
func TestForwardThroughRealServers(t *testing.T) {
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(web, webtest.Handler())
	defer web.Close()
	guestPort := web.Addr().(*net.TCPAddr).Port
	for _, kind := range []sshdtest.Kind{sshdtest.OpenSSH, sshdtest.Dropbear} {
		t.Run(string(kind), func(t *testing.T) {
			srv := sshdtest.Start(t, kind)
			conn := &Conn{Dial: func(ctx context.Context) (*ssh.Client, error) { return sshconn.Dial(ctx, srv.Target()) }}
			defer conn.Close()
			ls, err := Listen([]Spec{{0, guestPort}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Serve(ctx, ls[0], conn.Get, t.Logf) }()
			webtest.Check(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(ls[0].HostPort)))
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if c, err := net.Dial("tcp", ls[0].Addr().String()); err == nil {
				c.Close()
				t.Error("the host port still accepts after the forward ended")
			}
			if t.Failed() {
				t.Logf("server log:\n%s", srv.Log())
			}
		})
	}
}

// The daemon reads what any process of the owner sends: bounded, never a panic.
func FuzzControlRequest(f *testing.F) {
	f.Add([]byte(`{"op":"add","forwards":[{"hostPort":0,"guestPort":3000}]}` + "\n"))
	f.Add([]byte(`{"op":"cancel","hostPorts":[8080]}` + "\n"))
	f.Add([]byte("3000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req Request
		if err := readMessage(bytes.NewReader(data), &req); err == nil && bytes.IndexByte(data, '\n') >= maxMessage {
			t.Fatalf("a line longer than %d bytes was read", maxMessage)
		}
		ParseSpec(string(data))
	})
}

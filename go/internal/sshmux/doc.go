// Package sshmux shares one SSH connection to a sandbox with its owner's
// keystone commands, as OpenSSH's ControlMaster does: the host daemon holds
// the connection (Held, run as the hostd Service) and serves sessions on a
// unix socket in the sandbox's state directory (Server); `exec` and `attach`
// open theirs through it (Dial) and make a connection of their own when the
// socket is absent, stale or refuses (sandbox.Connect). A command then costs
// one session on a connection that is already authenticated, not a TCP
// connect, a key exchange and a public-key signature in the guest.
//
// One socket connection carries one session channel, relayed frame by frame
// (proto.go, with flow control per stream in stream.go). The client side is
// an ssh.Conn, so sshconn.Exec and sshconn.Attach run over it unchanged:
// argv, streams, exit status and signal, PTY and window changes, signals and
// cancellation behave exactly as over a connection of their own.
//
// Trust. Only the owner gets in: the socket is 0600 in the owner's 0700
// state directory, and the daemon checks each client's uid with SO_PEERCRED
// before reading a byte of it (the client checks the daemon's the same way).
// The daemon relays only session channels and the requests a session makes
// (no port, agent or X11 forwarding), checks the exit status and signal the
// guest sends before the client's x/crypto parses them, and names the host
// key it pinned so that a client whose pin changed does not use it. Every
// frame's length is bounded by its type before anything is allocated; the
// parsers on both sides have fuzz targets.
//
// It never runs the ssh binary, never accepts a host key it was not given,
// and never keeps a session open past its client or its connection.
package sshmux

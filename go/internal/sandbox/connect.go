package sandbox

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/sshmux"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// GuestUser is the account every guest has.
const GuestUser = "sandbox"

// Target is how to reach the sandbox: its client key and pinned host key.
func (sb *Sandbox) Target() (sshconn.Target, error) {
	signer, err := sshconn.LoadSigner(sb.Dir.Path(statedir.ClientKey))
	if err != nil {
		return sshconn.Target{}, fmt.Errorf("failed to read the client key of %q: %w", sb.Name, err)
	}
	if sb.HostKey == "" {
		return sshconn.Target{}, fmt.Errorf("sandbox %q has no pinned host key", sb.Name)
	}
	hostKey, err := sshconn.ParseHostKey([]byte(sb.HostKey))
	if err != nil {
		return sshconn.Target{}, fmt.Errorf("sandbox %q: bad pinned host key: %w", sb.Name, err)
	}
	return sshconn.Target{
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(sb.SSHPort)),
		User:    GuestUser,
		Signer:  signer,
		HostKey: hostKey,
	}, nil
}

// Connect returns a connection for exec and attach sessions: through the
// host daemon's held connection when the daemon serves one (package sshmux),
// else a connection of its own (Dial), so a missing or stale socket (the
// daemon was killed) costs nothing but the handshake it saves otherwise.
func (sb *Sandbox) Connect(ctx context.Context) (*ssh.Client, error) {
	// The daemon's connection counts only when it was checked against the
	// pin the registry holds now; else the own connection says why not.
	if pin, err := sshconn.ParseHostKey([]byte(sb.HostKey)); err == nil {
		if c, err := sshmux.Dial(ctx, sb.Dir.Path(statedir.SessionSocket), pin); err == nil {
			return c, nil
		}
	}
	return sb.Dial(ctx)
}

// Dial connects to a running sandbox, retrying a connection the guest's
// sshd drops before the handshake (sshconn.DialBusy).
func (sb *Sandbox) Dial(ctx context.Context) (*ssh.Client, error) {
	t, err := sb.Target()
	if err != nil {
		return nil, err
	}
	return sshconn.DialBusy(ctx, t)
}

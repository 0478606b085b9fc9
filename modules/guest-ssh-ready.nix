# The guest's readiness announcement (docs/runner-contract.md, optional) and
# what the host's held connection needs of sshd, imported by ./guest.nix.
#
# keystone-agent-ready writes one line on the console (ttyS0, which the
# runner's output carries to state/console.log) the moment sshd listens, so
# the host makes its one SSH handshake then instead of at its next poll. The
# line is a hint: the handshake with the pinned host key is the proof. Go
# package announce defines it; a Go test checks that this file writes it.
{ lib, ... }:
let
  line = "keystone-agent: sshd is listening";
  # /proc/net/tcp{,6} name a listening socket by its local port in hex and
  # state 0A; 22 is the guest port every runner forwards to
  portHex = "0016";
  waitAndAnnounce = ''
    listening() {
      local f local_addr state
      for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        while read -r _ local_addr _ state _; do
          [[ $local_addr == *:${portHex} && $state == 0A ]] && return 0
        done <"$f"
      done
      return 1
    }
    # every 10 ms for at most a minute: sshd starts in well under that
    for ((i = 0; i < 6000; i++)); do
      if listening; then
        echo ${lib.escapeShellArg line} >/dev/console
        exit 0
      fi
      sleep 0.01
    done
    echo "[keystone-agent] sshd did not listen on port 22 within a minute" >&2
    exit 1
  '';
in
{
  config = {
    systemd.services.keystone-agent-ready = {
      description = "Announce on the console that sshd listens (keystone agent)";
      wantedBy = [ "sshd.service" ];
      after = [ "sshd.service" ];
      serviceConfig.Type = "oneshot";
      script = waitAndAnnounce;
    };
    # exec and attach share the host daemon's one connection; OpenSSH's
    # default of 10 sessions per connection would send the 11th concurrent
    # command to a connection of its own
    services.openssh.settings.MaxSessions = lib.mkDefault 64;
  };
}

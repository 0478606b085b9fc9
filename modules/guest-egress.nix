# The guest's side of the host proxy (docs/egress.md), imported by
# ./guest.nix: the NIC that carries SSH also forwards the proxy's address
# (lib/default.nix `proxy`) to the relay command, once per guest connection,
# and in `user` mode that NIC is restricted to SSH and the proxy unless the
# egress mode is open. The NICs themselves are built in ./guest.nix from
# `netdevOptions` below.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkIf types;
  k = import ../lib { inherit lib; };
  cfg = config.keystone.guest;
  # qemu option values escape a comma by doubling it
  qemuEscape = lib.replaceStrings [ "," ] [ ",," ];
in
{
  options.keystone.guest = {
    egress = mkOption {
      type = types.enum [ "allowlist" "open" "none" ];
      default = "allowlist";
      description = ''
        The sandbox's egress mode (keystone.agent.sandboxes.<name>.egress.mode).
        In user networking anything but open restricts the guest's NIC to SSH
        and the proxy. Imperative runners take it at run time (KEYSTONE_EGRESS).
      '';
    };
    proxyCommand = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/current-system/sw/bin/keystone agent proxy-relay --sandbox my-app /var/lib/keystone-agent/my-app/state/proxy.sock";
      description = ''
        What qemu runs for each guest connection to the proxy's address, with
        the connection on stdin (split by glib, no shell). null: no proxy.
        Imperative runners take it at run time (KEYSTONE_PROXY_COMMAND).
      '';
    };
    netdevOptions = mkOption {
      type = types.str;
      readOnly = true;
      internal = true;
      description = "The proxy's part of the -netdev user options of the NIC that carries SSH (leading comma).";
    };
  };

  config.keystone.guest = {
    proxyCommand = mkIf cfg.runtime k.runtime.proxyCommand;
    # The imperative runner drops ",restrict=on" from the user NIC when
    # KEYSTONE_EGRESS is open (lib/runner.nix).
    netdevOptions =
      lib.optionalString (cfg.proxyCommand != null) ",guestfwd=tcp:${k.proxy.address}-cmd:${qemuEscape cfg.proxyCommand}"
      + lib.optionalString (cfg.network.mode == "user" && (cfg.runtime || cfg.egress != "open")) ",restrict=on";
  };
}

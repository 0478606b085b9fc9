# Tap and macvtap devices of a declared sandbox, made for its owner.
#
# microvm.nix's interfaces.nix creates them for its user `microvm`
# ("TODO: don't hardcode but obtain from host config"), but keystone runs
# qemu as the sandbox's owner, which then cannot open them (EPERM). This
# guest-side module replaces microvm.nix's tap-up and macvtap-up with the
# same steps for the owner; microvm.nix's microvm-tap-interfaces@ and
# microvm-macvtap-interfaces@ units still run them, as root, before the VM.
# Imported per sandbox by host.nix: { owner } is the host user.
{ owner }:
{ config, lib, pkgs, ... }:
let
  byType = type: lib.filter (i: i.type == type) config.microvm.interfaces;
  taps = byType "tap";
  macvtaps = byType "macvtap";
  ip = lib.getExe' pkgs.iproute2 "ip";
  # the flags microvm.nix uses: qemu asks for multiple queues with more than one vcpu
  tapFlags = lib.concatStringsSep " " ([ "vnet_hdr" ]
    ++ lib.optional config.microvm.declaredRunner.passthru.tapMultiQueue "multi_queue");

  tapUp = { id, ... }: ''
    if [ -e /sys/class/net/${id} ]; then
      ${ip} link delete '${id}'
    fi
    ${ip} tuntap add name '${id}' mode tap user ${lib.escapeShellArg owner} ${tapFlags}
    ${ip} link set '${id}' up
  '';
  macvtapUp = { id, mac, macvtap, ... }: ''
    if [ -e /sys/class/net/${id} ]; then
      ${ip} link delete '${id}'
    fi
    ${ip} link add link '${macvtap.link}' name '${id}' address '${mac}' type macvtap mode '${macvtap.mode}'
    ${ip} link set '${id}' allmulticast on
    if [ -f "/proc/sys/net/ipv6/conf/${id}/disable_ipv6" ]; then
      echo 1 > "/proc/sys/net/ipv6/conf/${id}/disable_ipv6"
    fi
    ${ip} link set '${id}' up
    ${pkgs.coreutils}/bin/chown ${lib.escapeShellArg "${owner}:kvm"} "/dev/tap$(< "/sys/class/net/${id}/ifindex")"
  '';
in
{
  microvm.binScripts = lib.mkMerge [
    (lib.mkIf (taps != [ ]) {
      tap-up = lib.mkForce ("set -eou pipefail\n" + lib.concatMapStrings tapUp taps);
    })
    (lib.mkIf (macvtaps != [ ]) {
      macvtap-up = lib.mkForce ("set -eou pipefail\n" + lib.concatMapStrings macvtapUp macvtaps);
    })
  ];
}

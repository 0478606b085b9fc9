# All assertions of the host module. Each names the option and the way out.
{ config, lib, pkgs, ... }:
let
  cfg = config.keystone.agent;
  k = import ../lib { inherit lib; };
  enabled = lib.filterAttrs (_: sb: sb.enable) cfg.sandboxes;
  opt = name: o: "keystone.agent.sandboxes.${name}.${o}";
  each = f: lib.mapAttrsToList f enabled;

  # every sandbox forwards its SSH port (lib/default.nix `control`), grouped by port
  byPort = lib.groupBy (name: toString enabled.${name}.sshPort) (lib.attrNames enabled);
  clashes = lib.filterAttrs (_: names: lib.length names > 1) byPort;
  system = pkgs.stdenv.hostPlatform.system;
in
{
  config.assertions =
    lib.optional (enabled != { } || cfg.enable) {
      assertion = lib.elem system k.systems;
      message = "keystone.agent: this host is ${system}; keystone agent runs on ${lib.concatStringsSep " and " k.systems} only (the guests' CPU flags, kvm modules and runners are x86-specific).";
    }
    ++ each (name: sb: {
      assertion = k.isValidName name;
      message = "keystone.agent.sandboxes.${name}: invalid sandbox name \"${name}\": use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters.";
    })
    ++ each (name: sb: {
      assertion = sb.memory >= 2048;
      message = "${opt name "memory"} is ${toString sb.memory} MiB; the minimum is 2048: set ${opt name "memory"} = 2048 or more.";
    })
    ++ each (name: sb: {
      assertion = !k.hasWhitespaceOrComma sb.dir;
      message = "${opt name "dir"} \"${sb.dir}\" contains whitespace or a comma, which systemd-tmpfiles and qemu's -fsdev (the workspace share) cannot take: choose a path without them.";
    })
    ++ each (name: sb: {
      assertion = !k.hasWhitespace sb.projectPath;
      message = "${opt name "projectPath"} \"${sb.projectPath}\" contains whitespace, which systemd's RequiresMountsFor cannot take: move or link the project to a path without it.";
    })
    ++ lib.mapAttrsToList (port: names: {
      assertion = false;
      message = "${lib.concatMapStringsSep " and " (n: opt n "sshPort") names} are all ${port}: give each sandbox its own ${opt (lib.head names) "sshPort"}.";
    }) clashes
    ++ each (name: sb: {
      assertion = lib.elem sb.network.mode [ "tap" "macvtap" ] -> lib.stringLength sb.network.interface <= k.maxIfName;
      message = "${opt name "network.interface"} \"${sb.network.interface}\" is ${toString (lib.stringLength sb.network.interface)} characters; interface ids are limited to ${toString k.maxIfName}: set ${opt name "network.interface"} to a shorter id or use a shorter sandbox name.";
    })
    ++ each (name: sb: {
      assertion = sb.network.mode == "user" || sb.egress.mode == "open";
      message = "${opt name "egress.mode"} is \"${sb.egress.mode}\" but ${opt name "network.mode"} is \"${sb.network.mode}\": only user networking makes the host proxy the guest's one way out; set ${opt name "egress.mode"} = \"open\" or ${opt name "network.mode"} = \"user\".";
    })
    ++ each (name: sb: {
      assertion = sb.credentialsFile == null || !lib.hasPrefix builtins.storeDir sb.credentialsFile;
      message = "${opt name "credentialsFile"} is in the Nix store, which every user can read: point it at a runtime secret (agenix, sops-nix), e.g. /run/agenix/keystone-${name}.";
    })
    # the proxy's own rule (credentials.ValidateUpstream), at the rebuild
    # rather than when the host daemon starts
    ++ lib.concatLists (each (name: sb: lib.mapAttrsToList (p: u: {
      assertion = builtins.match "https://[^/?#@[:space:]]+(/[^?#[:space:]]*)?" u != null;
      message = "${opt name "egress.upstreams.${p}"} is \"${u}\": want an https URL such as https://gateway.example.com/${p}, without user, query or fragment (keys are sent over TLS only).";
    }) sb.egress.upstreams))
    ++ each (name: sb: {
      assertion = sb.egress.upstreamCA == null || lib.hasPrefix "/" sb.egress.upstreamCA;
      message = "${opt name "egress.upstreamCA"} \"${toString sb.egress.upstreamCA}\" is not an absolute path: name the PEM file, e.g. /etc/ssl/corp-root.pem.";
    })
    ++ each (name: sb: {
      assertion = sb.network.mode == "bridge" -> sb.network.bridge != null;
      message = "${opt name "network.mode"} is \"bridge\" but ${opt name "network.bridge"} is not set: name the host bridge, e.g. ${opt name "network.bridge"} = \"br0\".";
    })
    ++ each (name: sb: {
      assertion = sb.network.mode == "macvtap" -> sb.network.macvtap.link != null;
      message = "${opt name "network.mode"} is \"macvtap\" but ${opt name "network.macvtap.link"} is not set: name the host link, e.g. \"enp1s0\".";
    })
    ++ each (name: sb: {
      assertion = config.users.users ? ${sb.owner};
      message = "${opt name "owner"} \"${sb.owner}\" is not declared in users.users: declare the user or choose another owner.";
    })
    ++ each (name: sb: {
      assertion = sb.owner != "root";
      message = "${opt name "owner"} must not be root: the VM runs as its owner; choose an unprivileged user.";
    })
    ++ each (name: sb: {
      assertion = !(lib.hasPrefix "${sb.dir}/" "${sb.projectPath}/") && !(lib.hasPrefix "${sb.projectPath}/" "${sb.dir}/");
      message = "${opt name "projectPath"} and ${opt name "dir"} overlap: the sandbox directory holds a clone of the project and must lie outside it (and the project outside it).";
    });
}

# All assertions of the host module. Each names the option and the way out.
{ config, lib, ... }:
let
  cfg = config.keystone.agent;
  k = import ../lib { inherit lib; };
  enabled = lib.filterAttrs (_: sb: sb.enable) cfg.sandboxes;
  opt = name: o: "keystone.agent.sandboxes.${name}.${o}";
  each = f: lib.mapAttrsToList f enabled;

  # sandboxes that forward an SSH port, grouped by port
  userNet = lib.filterAttrs (_: sb: sb.network.mode == "user") enabled;
  byPort = lib.groupBy (name: toString userNet.${name}.sshPort) (lib.attrNames userNet);
  clashes = lib.filterAttrs (_: names: lib.length names > 1) byPort;
in
{
  config.assertions =
    each (name: sb: {
      assertion = k.isValidName name;
      message = "keystone.agent.sandboxes.${name}: invalid sandbox name \"${name}\": use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters.";
    })
    ++ each (name: sb: {
      assertion = sb.memory >= 2048;
      message = "${opt name "memory"} is ${toString sb.memory} MiB; the minimum is 2048: set ${opt name "memory"} = 2048 or more.";
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

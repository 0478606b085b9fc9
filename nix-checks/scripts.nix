# The shell the modules generate, by name, for nix-checks/run.sh to lint with
# shellcheck (like microvm.nix's checks/shellcheck.nix). Evaluated with nixeval:
#   eval-module.sh -e '(import nix-checks/scripts.nix) { inherit lib pkgs evalHost evalGuest microvmSrc; }' modules/default.nix
{ lib, pkgs, evalHost, evalGuest, microvmSrc, ... }:
let
  host = evalHost [ {
    keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { };
    users.users.alice.isNormalUser = true;
    keystone.agent.sandboxes.demo = { projectPath = "/home/alice/p"; owner = "alice"; authorizedKeys = [ "ssh-ed25519 AAAA alice@x" ]; };
  } ];
  imperative = mode: evalGuest { modules = [ (microvmSrc + "/nixos-modules/microvm") ../modules/guest.nix { keystone.guest = { runtime = true; network.mode = mode; }; } ]; };
  runnerFor = mode: import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = imperative mode; };
  runner = runnerFor "user";
  owned = evalHost [ {
    keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { };
    users.users.alice.isNormalUser = true;
    keystone.agent.sandboxes.t = { projectPath = "/home/alice/p"; owner = "alice"; network.mode = "tap"; vcpus = 2; };
    keystone.agent.sandboxes.m = { projectPath = "/home/alice/q"; owner = "alice"; network = { mode = "macvtap"; macvtap.link = "eth0"; }; sshPort = 2400; };
  } ];
in
{
  "keystone-agent-prepare" = host.config.systemd.services.keystone-agent-prepare-demo.script;
  "keystone-guest-setup" = host.guests.demo.config.systemd.services.keystone-guest-setup.script;
  "keystone-agent-ready" = host.guests.demo.config.systemd.services.keystone-agent-ready.script;
  "microvm-run" = runner.scripts.run.text;
  "microvm-run-tap" = (runnerFor "tap").scripts.run.text;
  "microvm-run-bridge" = (runnerFor "bridge").scripts.run.text;
  "tap-up" = owned.guests.t.config.microvm.binScripts.tap-up;
  "macvtap-up" = owned.guests.m.config.microvm.binScripts.macvtap-up;
  "microvm-shutdown" = runner.scripts.shutdown.text;
}

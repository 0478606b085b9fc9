# Evaluation tests of modules/guest.nix and of the imperative runner
# (lib/runner.nix), in either harness (see host-test.nix).
{ lib, pkgs, evalGuest, microvmSrc, ... }:
let
  k = import ../lib { inherit lib; };
  rt = k.runtime;
  guestWith = m: evalGuest { modules = [ (microvmSrc + "/nixos-modules/microvm") ../modules/guest.nix m ]; };
  failed = e: map (a: a.message) (lib.filter (a: !a.assertion) e.config.assertions);
  declared = guestWith { keystone.guest = { name = "demo"; workspace.source = "/sb/demo/workspace"; guestDir = "/sb/demo/state/guest"; agents = [ "claude-code" "codex" ]; }; };
  d = declared.config;
  imperative = guestWith { keystone.guest = { runtime = true; agents = [ "codex" ]; }; };
  i = imperative.config;
  runner = import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = imperative; };
  runnerFor = mode: import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = guestWith { keystone.guest = { runtime = true; network.mode = mode; }; }; };
  has = lib.hasInfix;
  pkgNames = c: map (p: p.name) c.environment.systemPackages;
in
{
  test_declared_no_failed_assertions = { expr = failed declared; expected = [ ]; };
  test_imperative_no_failed_assertions = { expr = failed imperative; expected = [ ]; };

  # --- what the guest offers ---
  test_sandbox_user = {
    expr = with d.users.users.sandbox; [ isNormalUser uid group (lib.elem "wheel" extraGroups) home hashedPassword ];
    expected = [ true 1000 "sandbox" true "/home/sandbox" "!" ];
  };
  test_sudo_without_password = { expr = d.security.sudo.wheelNeedsPassword; expected = false; };
  test_sshd = {
    expr = with d.services.openssh; [ enable hostKeys (lib.elem "/run/keystone-ssh/%u" authorizedKeysFiles) settings.PermitRootLogin settings.AllowUsers ];
    expected = [ true [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ] true "no" [ "sandbox" ] ];
  };
  test_tools = {
    expr = lib.all (n: lib.any (lib.hasPrefix n) (pkgNames d)) [ "git" "python3" "vim" "curl" "wget" "htop" "tmux" ] && d.programs.direnv.enable;
    expected = true;
  };
  test_agents_wrapped = { expr = lib.filter (n: lib.elem n [ "claude" "codex" "gemini" ]) (pkgNames d); expected = [ "claude" "codex" ]; };
  test_claude_managed_settings = { expr = builtins.fromJSON d.environment.etc."claude-code/managed-settings.json".text; expected = { permissions.defaultMode = "bypassPermissions"; }; };
  test_keys_mount_readonly = { expr = with d.fileSystems."/mnt/keystone"; [ device fsType (lib.elem "ro" options) ]; expected = [ "keystone" "9p" true ]; };
  test_setup_before_sshd = {
    expr = with d.systemd.services.keystone-guest-setup; [ before requiredBy unitConfig.RequiresMountsFor serviceConfig.Type ];
    expected = [ [ "sshd.service" ] [ "sshd.service" ] [ "/mnt/keystone" "/workspace" ] "oneshot" ];
  };
  test_ready_announcement = {
    expr = with d.systemd.services.keystone-agent-ready; [ wantedBy after serviceConfig.Type
      (has "echo 'keystone-agent: sshd is listening' >/dev/console" script) (has "*:0016 && $state == 0A" script)
      d.services.openssh.settings.MaxSessions ];
    expected = [ [ "sshd.service" ] [ "sshd.service" ] "oneshot" true true 64 ];
  };
  test_setup_script = {
    expr = map (s: has s d.systemd.services.keystone-guest-setup.script) [
      ''install -m 0600 -o root -g root "$src/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key''
      ''if [ -e "$src/password-auth" ]; then''
      "echo 'sandbox:sandbox' | chpasswd"
      "uid=$(stat -c %u /workspace)"
    ];
    expected = [ true true true true ];
  };
  test_password_only_on_marker = {
    # the only place a password is set is behind the marker test
    expr = lib.length (lib.splitString "chpasswd" d.systemd.services.keystone-guest-setup.script);
    expected = 2;
  };
  test_fast_boot = {
    expr = [ d.networking.useNetworkd d.networking.dhcpcd.enable d.systemd.network.wait-online.enable (lib.elem "quiet" d.boot.kernelParams) ];
    expected = [ true false false true ];
  };
  test_nested_kvm_modules = { expr = lib.filter (lib.hasPrefix "kvm") d.boot.kernelModules; expected = [ "kvm-intel" "kvm-amd" ]; };
  test_nested_off = {
    expr = lib.filter (lib.hasPrefix "kvm") (guestWith { keystone.guest = { name = "demo"; nested = false; workspace.source = "/w"; guestDir = "/g"; }; }).config.boot.kernelModules;
    expected = [ ];
  };
  test_no_host_paths = {
    # shares: only the clone; the keys go through a readonly=on fsdev; the store is a disk image
    expr = map (s: s.source) d.microvm.shares ++ [ (lib.elem "local,id=ks-keys,path=/sb/demo/state/guest,security_model=none,readonly=on" d.microvm.qemu.extraArgs) ];
    expected = [ "/sb/demo/workspace" true ];
  };
  test_no_credentials_mounted = {
    expr = lib.filter (p: has "/.ssh" p || has "/root" p || lib.hasPrefix "/home/" p) (lib.attrNames d.fileSystems ++ map (s: s.source) d.microvm.shares);
    expected = [ ];
  };
  test_gemini_assertion = {
    expr = failed (guestWith { keystone.guest = { name = "x"; workspace.source = "/w"; guestDir = "/g"; agent.gemini-cli = { enable = true; package = null; }; }; });
    expected = [ "keystone.guest.agent.gemini-cli.enable: this nixpkgs has no package `gemini-cli`; set keystone.guest.agent.gemini-cli.package or use a newer nixpkgs." ];
  };
  test_runtime_rejects_macvtap = {
    expr = lib.any (lib.hasPrefix "keystone.guest.runtime:") (failed (guestWith { keystone.guest = { runtime = true; network = { mode = "macvtap"; macvtap.link = "eth0"; }; }; }));
    expected = true;
  };
  test_guest_x86_64_only = {
    expr = lib.filter (lib.hasPrefix "keystone.guest: this guest") (failed (guestWith {
      _module.args.pkgs = lib.mkForce (pkgs // { stdenv = pkgs.stdenv // { hostPlatform = lib.systems.elaborate "aarch64-linux"; }; });
      keystone.guest = { name = "x"; workspace.source = "/w"; guestDir = "/g"; };
    }));
    expected = [ "keystone.guest: this guest is aarch64-linux; keystone builds x86_64-linux guests only (their CPU flags, kvm modules and runner are x86-specific)." ];
  };
  test_git_identity = { expr = d.programs.git.config.user; expected = { name = "keystone agent"; email = "agent@sandbox.invalid"; }; };

  # --- the imperative guest: placeholders, replaced by the runner at run time ---
  test_runtime_placeholders = {
    expr = [ i.microvm.mem i.microvm.vcpu i.microvm.socket i.networking.hostName i.system.name (map (s: s.source) i.microvm.shares) ];
    expected = [ rt.memory rt.vcpus rt.qmpSocket rt.hostName "keystone-sandbox" [ rt.workspace ] ];
  };
  test_runner_command_has_placeholders = {
    expr = map (s: has s runner.command) [ "-m ${toString rt.memory} " "-smp ${toString rt.vcpus} " "hostfwd=tcp:127.0.0.1:${toString rt.sshPort}-:22" "path=${rt.workspace}," "path=${rt.guestDir},security_model=none,readonly=on" "unix:${rt.qmpSocket}," "keystone.name=${rt.hostName}" ];
    expected = [ true true true true true true true ];
  };
  test_runner_layout = {
    expr = map (s: has s runner.buildCommand) [ "$out/bin/microvm-run" "$out/bin/microvm-shutdown" "echo '{\"accel\":\"kvm\",\"networks\":[\"user\"]}' > $out/share/keystone/runner.json" "$out/share/microvm/system" ];
    expected = [ true true true true ];
  };
  test_runner_is_one_build_per_config = {
    # two imperative guests with the same options give the same runner
    expr = (import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = guestWith { keystone.guest = { runtime = true; agents = [ "codex" ]; }; }; }).outPath == runner.outPath;
    expected = true;
  };
  test_runner_bridge = {
    # the bridge is a run-time value too: one runner serves every bridge
    expr = let r = runnerFor "bridge"; in
      [ (has "bridge,id=ks-net,br=${rt.bridge},helper=/run/wrappers/bin/qemu-bridge-helper" r.command) (has "restrict=on,hostfwd=tcp:127.0.0.1:${toString rt.sshPort}-10.0.2.15:22" r.command) (has "mac=${rt.mac}" r.command)
        (has ''"networks":["bridge"]'' r.buildCommand) ];
    expected = [ true true true true ];
  };
  test_runner_tap = {
    expr = let r = runnerFor "tap"; in [ (has "tap,id=${rt.tapInterface},ifname=${rt.tapInterface},script=no,downscript=no,queues=${toString rt.vcpus}" r.command) (has "id=ks-ctl,restrict=on" r.command) ];
    expected = [ true true ];
  };
  test_runner_needs_runtime = {
    expr = (import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = declared; }).outPath;
    expectError = ".*must set keystone\\.guest\\.runtime = true.*";
  };
}

# Evaluation tests of modules/guest.nix and of the imperative runner
# (lib/runner.nix), in either harness (see host-test.nix).
{ lib, pkgs, evalGuest, microvmSrc, ... }:
let
  k = import ../lib { inherit lib; };
  rt = k.runtime;
  guestWith = m: evalGuest { modules = [ (microvmSrc + "/nixos-modules/microvm") ../modules/guest.nix m ]; };
  failed = e: map (a: a.message) (lib.filter (a: !a.assertion) e.config.assertions);
  base = { name = "demo"; workspace.source = "/sb/demo/workspace"; guestDir = "/sb/demo/state/guest"; };
  declared = guestWith { keystone.guest = base // { agents = [ "claude" "codex" ]; allowUnfreeAgents = [ "claude" ]; }; };
  d = declared.config;
  imperative = guestWith { keystone.guest = { runtime = true; agents = [ "codex" ]; }; };
  i = imperative.config;
  runner = import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = imperative; };
  runnerFor = mode: import ../lib/runner.nix { inherit pkgs; microvm = microvmSrc; nixos = guestWith { keystone.guest = { runtime = true; network.mode = mode; }; }; };
  has = lib.hasInfix;
  pkgNames = c: map (p: p.name) c.environment.systemPackages;
  manifest = builtins.fromJSON (builtins.readFile ../go/internal/agents/manifest.json);
  # the npm packages a guest installs, as { id = passthru.npm; }
  npmOf = c: lib.listToAttrs (map (p: lib.nameValuePair (lib.removePrefix "keystone-" p.pname) p.npm) (lib.filter (p: p ? npm) c.environment.systemPackages));
  installedWith = g: lib.attrNames (npmOf (guestWith { keystone.guest = base // g; }).config);
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
  # --- agents: the pinned manifest's tarballs, the same as the test guest's ---
  test_agents_from_manifest = {
    expr = npmOf d;
    expected = lib.mapAttrs (_: p: { inherit (p) npm url integrity; license = p.license or ""; })
      (lib.getAttrs [ "claude-code" "codex" "node" "npm" ] manifest.packages);
  };
  test_default_agents_are_free = { expr = [ d.keystone.guest.agents (guestWith { keystone.guest = base; }).config.keystone.guest.agents ]; expected = [ [ "claude" "codex" ] [ "codex" "gemini" ] ]; };
  test_default_agents_with_consent = { expr = installedWith { allowUnfreeAgents = [ "claude" ]; }; expected = [ "claude-code" "codex" "gemini-cli" "node" "npm" ]; };
  test_node_always = { expr = installedWith { agents = [ ]; }; expected = [ "node" "npm" ]; };
  test_session_agent_installed = { expr = installedWith { agents = [ "codex" ]; agent = "gemini"; }; expected = [ "codex" "gemini-cli" "node" "npm" ]; };
  test_unfree_needs_consent = {
    expr = failed (guestWith { keystone.guest = base // { agents = [ "codex" ]; agent = "claude"; }; });
    expected = [ "keystone.guest.agents contains \"claude\", whose licence is unfree (claude-code): accept it with keystone.guest.allowUnfreeAgents = [ \"claude\" ] (declared sandboxes: keystone.agent.allowUnfreeAgents), or remove \"claude\" from the agents." ];
  };
  test_unfree_enum = { expr = (guestWith { keystone.guest = base // { allowUnfreeAgents = [ "codex" ]; }; }).config.keystone.guest.allowUnfreeAgents; expectError = ".*allowUnfreeAgents.*"; };
  test_no_managed_settings = { expr = (d.environment.etc or { }) ? "claude-code/managed-settings.json"; expected = false; };
  test_tmux = { expr = lib.any (lib.hasPrefix "tmux") (pkgNames d); expected = true; };

  # --- the session environment and git identity, copied from the keystone share ---
  test_session_files = {
    expr = with d.systemd.services.keystone-session-files; [ before requiredBy unitConfig.RequiresMountsFor (has "/run/keystone-agent" script) (has "environment gitconfig" script) ];
    expected = [ [ "sshd.service" ] [ "sshd.service" ] [ "/mnt/keystone" ] true true ];
  };
  test_environment_sourced_by_logins = { expr = has ". /run/keystone-agent/environment" d.environment.extraInit; expected = true; };
  test_git_identity_included = { expr = [ d.programs.git.enable d.programs.git.config.include.path ]; expected = [ true "/run/keystone-agent/gitconfig" ]; };

  # --- a home that survives stop/start: on the var volume ---
  test_persistent_home = {
    expr = with d.fileSystems."/home/sandbox"; [ device (lib.elem "bind" options) depends (lib.elem "/var" (map (v: v.mountPoint) d.microvm.volumes)) ];
    expected = [ "/var/lib/keystone-agent/home" true [ "/var" ] true ];
  };
  test_home_before_setup = { expr = d.systemd.services.keystone-guest-setup.unitConfig.RequiresMountsFor; expected = [ "/home/sandbox" "/mnt/keystone" "/workspace" ]; };
  test_home_dir_created = { expr = with d.systemd.services.keystone-home; [ before unitConfig.RequiresMountsFor (has "/var/lib/keystone-agent/home" script) ]; expected = [ [ "home-sandbox.mount" ] [ "/var" ] true ]; };
  test_home_tmpfs_when_off = { expr = (guestWith { keystone.guest = base // { persistentHome = false; }; }).config.fileSystems ? "/home/sandbox"; expected = false; };
  test_keys_mount_readonly = { expr = with d.fileSystems."/mnt/keystone"; [ device fsType (lib.elem "ro" options) ]; expected = [ "keystone" "9p" true ]; };
  test_setup_before_sshd = {
    expr = with d.systemd.services.keystone-guest-setup; [ before requiredBy unitConfig.RequiresMountsFor serviceConfig.Type ];
    expected = [ [ "sshd.service" ] [ "sshd.service" ] [ "/home/sandbox" "/mnt/keystone" "/workspace" ] "oneshot" ];
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
    # /home/sandbox is a bind of the guest's own /var (test_persistent_home)
    expr = lib.filter (p: has "/.ssh" p || has "/root" p || lib.hasPrefix "/home/" p) (lib.attrNames (removeAttrs d.fileSystems [ "/home/sandbox" ]) ++ map (s: s.source) d.microvm.shares);
    expected = [ ];
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

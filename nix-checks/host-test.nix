# Evaluation tests of modules/host.nix (+ guest.nix through microvm.vms).
# Runs in two harnesses with the same scope shape:
#   nix-checks/run.sh           offline: nixeval, real nixpkgs lib + real microvm.nix modules, NixOS stubbed
#   nix flake check             checks.<system>.module-eval: real NixOS (nix-checks/default.nix)
# Cases: { expr; expected; } | { expr; expectError = "ERE"; } | { expr; } (must evaluate).
{ lib, pkgs, evalHost, ... }:
let
  k = import ../lib { inherit lib; };
  pkg = { keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { }; };
  users = { users.users.alice = { isNormalUser = true; }; users.users.bob = { isNormalUser = true; }; };
  app = { projectPath = "/home/alice/src/my-app"; owner = "alice"; };
  withSandboxes = sbs: evalHost [ pkg users { keystone.agent.sandboxes = sbs; } ];
  one = sb: withSandboxes { x = app // sb; };

  host = evalHost [ pkg users {
    keystone.agent.allowUnfreeAgents = [ "claude" ];
    keystone.agent.sandboxes = {
      my-app = app // { syncMode = "auto-commit"; agent = "claude"; };
      infra = { projectPath = "/home/bob/infra"; owner = "bob"; memory = 4096; vcpus = 2; nested = false; sshPort = 2300; network = { mode = "bridge"; bridge = "br0"; }; share = "virtiofs"; autostart = true; agents = [ "codex" ]; };
    };
  } ];
  c = host.config;
  svc = c.systemd.services;
  g = host.guests.my-app.config;
  gi = host.guests.infra.config;
  cmd = host.hypervisor.my-app.command;
  cmdInfra = host.hypervisor.infra.command;
  has = lib.hasInfix;
  registry = builtins.fromJSON c.environment.etc."keystone/agent/declared.json".text;
  # the flake's outputs, with this scope's lib and pkgs as nixpkgs (only
  # attributes that need no microvm.nix or build are read)
  flake = let
    out = (import ../flake.nix).outputs {
      self = out // { outPath = "/nix/store/00000000000000000000000000000000-source"; };
      nixpkgs = { inherit lib; legacyPackages.x86_64-linux = pkgs; };
      microvm = { };
    };
  in out;
in
{
  test_no_failed_assertions = { expr = host.failedAssertions; expected = [ ]; };
  test_toplevel_evaluates = { expr = host.toplevel; };

  # --- declared.json: the helper's view of declared sandboxes ---
  test_registry = {
    expr = registry.sandboxes.my-app;
    expected = {
      name = "my-app"; projectPath = "/home/alice/src/my-app"; dir = "/var/lib/keystone-agent/my-app";
      sshPort = k.sshPortFor "my-app"; memory = 8192; vcpus = 4; nested = true; network = "user";
      syncMode = "auto-commit"; owner = "alice"; unit = "microvm@my-app.service"; agent = "claude";
      egress = { mode = "allowlist"; allow = [ ]; upstreams = { }; };
    };
  };
  test_registry_no_agent = { expr = registry.sandboxes.infra.agent; expected = null; };
  test_registry_version = { expr = [ registry.version (lib.attrNames registry.sandboxes) ]; expected = [ 1 [ "infra" "my-app" ] ]; };
  test_registry_disabled_left_out = {
    expr = lib.attrNames (builtins.fromJSON (withSandboxes { a = app; b = app // { enable = false; sshPort = 2301; }; }).config.environment.etc."keystone/agent/declared.json".text).sandboxes;
    expected = [ "a" ];
  };
  test_helper_installed = { expr = lib.elem "keystone-0.1.0" (map (p: p.name) c.environment.systemPackages); expected = true; };
  test_nothing_without_sandboxes = { expr = (evalHost [ pkg ]).config.environment.etc or { } ? "keystone/agent/declared.json"; expected = false; };

  # --- microvm.nix's host module only for VMs to run (issue 10, item 5) ---
  test_microvm_host_off_without_sandboxes = {
    expr = let h = (evalHost [ pkg ]).config; in [ h.microvm.host.enable (h.security.wrappers or { } ? qemu-bridge-helper) (h.environment.etc or { } ? "qemu/bridge.conf") ];
    expected = [ false false false ];
  };
  test_microvm_host_off_with_helper_only = { expr = (evalHost [ pkg { keystone.agent.enable = true; } ]).config.microvm.host.enable; expected = false; };
  test_microvm_host_on_with_sandboxes = { expr = c.microvm.host.enable; expected = true; };
  test_microvm_host_user_choice_wins = { expr = (evalHost [ pkg { microvm.host.enable = true; } ]).config.microvm.host.enable; expected = true; };
  test_bridge_conf_only_used_bridges = { expr = c.environment.etc."qemu/bridge.conf".text; expected = "allow br0\n"; };
  test_bridge_conf_deny_all_without_bridges = { expr = (one { }).config.environment.etc."qemu/bridge.conf".text; expected = ""; };
  test_bridges_for_imperative_sandboxes = {
    expr = let h = (evalHost [ pkg { keystone.agent = { enable = true; bridges = [ "br0" "lan" ]; }; } ]).config; in
      [ h.microvm.host.enable h.environment.etc."qemu/bridge.conf".text h.security.wrappers.qemu-bridge-helper.capabilities (has "/libexec/qemu-bridge-helper" h.security.wrappers.qemu-bridge-helper.source) ];
    expected = [ false "allow br0\nallow lan\n" "cap_net_admin+ep" true ];
  };

  # --- defaults derive from <name> ---
  test_default_dir = { expr = c.keystone.agent.sandboxes.my-app.dir; expected = "/var/lib/keystone-agent/my-app"; };
  test_default_ssh_port = { expr = c.keystone.agent.sandboxes.my-app.sshPort; expected = k.sshPortFor "my-app"; };
  test_ssh_port_range = { expr = lib.all (n: let p = k.sshPortFor n; in p >= 22300 && p < 23000) [ "a" "my-app" "zz-top" "x1" ]; expected = true; };
  test_default_interface = { expr = c.keystone.agent.sandboxes.my-app.network.interface; expected = "ks-my-app"; };
  # the user NIC is built in extraArgs (restrict=on, the proxy's guestfwd): docs/egress.md
  test_default_mac = { expr = [ g.microvm.interfaces (has "virtio-net-pci,netdev=ks-net,mac=${k.macFor "my-app"},romfile=" cmd) ]; expected = [ [ ] true ]; };
  test_tap_interface_id = { expr = map (i: [ i.type i.id ]) (one { network.mode = "tap"; }).guests.x.config.microvm.interfaces; expected = [ [ "tap" "ks-x" ] ]; };
  test_mac_shape = { expr = builtins.match "02(:[0-9a-f]{2}){5}" (k.macFor "my-app") != null; expected = true; };
  test_hostname = { expr = [ g.networking.hostName gi.networking.hostName ]; expected = [ "my-app" "infra" ]; };
  test_state_dir_option = {
    expr = (withSandboxes { x = app; }).config.keystone.agent.sandboxes.x.dir == "/var/lib/keystone-agent/x"
      && (evalHost [ pkg users { keystone.agent.stateDir = "/srv/ka"; keystone.agent.sandboxes.x = app; } ]).config.keystone.agent.sandboxes.x.dir == "/srv/ka/x";
    expected = true;
  };

  # --- option mapping into the guest ---
  test_memory_vcpus = { expr = [ g.microvm.mem g.microvm.vcpu gi.microvm.mem gi.microvm.vcpu ]; expected = [ 8192 4 4096 2 ]; };
  test_memory_2048_bumped = {
    # qemu hangs with exactly 2 GiB: the declared guest gets 2050, as the imperative runner does
    expr = let h = one { memory = 2048; }; in [ h.guests.x.config.microvm.mem (has "-m 2050 " h.hypervisor.x.command) h.config.keystone.agent.sandboxes.x.memory ];
    expected = [ 2050 true 2048 ];
  };
  test_hypervisor = { expr = g.microvm.hypervisor; expected = "qemu"; };
  test_qmp_socket_relative = { expr = g.microvm.socket; expected = "qmp.sock"; };
  test_workspace_share = {
    expr = map (s: { inherit (s) tag source mountPoint proto securityModel; }) (lib.filter (s: s.tag == "workspace") g.microvm.shares);
    expected = [ { tag = "workspace"; source = "/var/lib/keystone-agent/my-app/workspace"; mountPoint = "/workspace"; proto = "9p"; securityModel = "none"; } ];
  };
  test_workspace_virtiofs = {
    expr = map (s: [ s.proto s.socket ]) (lib.filter (s: s.tag == "workspace") gi.microvm.shares);
    expected = [ [ "virtiofs" "/var/lib/keystone-agent/infra/state/virtiofs-workspace.sock" ] ];
  };
  test_only_store_and_clone_shared = {
    expr = [ (map (s: s.source) g.microvm.shares) g.microvm.storeOnDisk ];
    expected = [ [ "/var/lib/keystone-agent/my-app/workspace" ] true ];
  };
  test_bridge_interface = { expr = map (i: [ i.type i.bridge ]) gi.microvm.interfaces; expected = [ [ "bridge" "br0" ] ]; };
  test_autostart = { expr = c.microvm.autostart; expected = [ "infra" ]; };
  test_agents_installed = { expr = lib.any (p: lib.hasInfix "claude" p.name) g.environment.systemPackages; expected = true; };
  test_agents_not_installed = { expr = lib.any (p: lib.hasInfix "claude" p.name) gi.environment.systemPackages; expected = false; };
  test_session_agent_to_guest = { expr = [ g.keystone.guest.agent g.keystone.guest.allowUnfreeAgents gi.keystone.guest.agents ]; expected = [ "claude" [ "claude" ] [ "codex" ] ]; };
  test_extra_modules = {
    expr = (one { extraModules = [ { networking.domain = "sandbox.test"; } ]; }).guests.x.config.networking.domain;
    expected = "sandbox.test";
  };
  test_nested_modprobe = { expr = has "kvm_intel nested=1" c.boot.extraModprobeConfig; expected = true; };

  # --- the hypervisor command (microvm.nix's own qemu runner code) ---
  test_ssh_forward_loopback_only = { expr = has "hostfwd=tcp:127.0.0.1:${toString (k.sshPortFor "my-app")}-:22," cmd; expected = true; };
  test_no_wildcard_forward = { expr = has "hostfwd=tcp::" cmd || has "hostfwd=tcp:0.0.0.0" cmd; expected = false; };
  test_keys_share_readonly = {
    expr = has "local,id=ks-keys,path=/var/lib/keystone-agent/my-app/state/guest,security_model=none,readonly=on" cmd
      && has "mount_tag=keystone" cmd;
    expected = true;
  };
  test_qmp_in_state = { expr = has "-qmp unix:qmp.sock,server,nowait" cmd; expected = true; };
  test_nested_off_cpu = { expr = [ (has "-vmx,-svm" cmd) (has "-cpu host,+x2apic,-sgx,-vmx,-svm" cmdInfra) ]; expected = [ false true ]; };
  # --- the control path: 127.0.0.1:sshPort in every mode (issue 10, item 2) ---
  test_bridge_control_nic = {
    expr = map (s: has s cmdInfra) [
      "bridge,id=ks-net,br=br0,helper=/run/wrappers/bin/qemu-bridge-helper"
      "user,id=ks-ctl,restrict=on,hostfwd=tcp:127.0.0.1:2300-10.0.2.15:22"
      "virtio-net-pci,netdev=ks-ctl,mac=02:6b:73:00:00:01,romfile="
    ];
    expected = [ true true true ];
  };
  test_bridge_one_forward = { expr = lib.length (lib.splitString "hostfwd=" cmdInfra); expected = 2; };
  test_user_no_control_nic = { expr = has "ks-ctl" cmd; expected = false; };
  # --- the host proxy and the egress policy (issue 9, docs/egress.md) ---
  test_user_nic_proxy_restricted = {
    expr = has "user,id=ks-net,hostfwd=tcp:127.0.0.1:${toString (k.sshPortFor "my-app")}-:22,guestfwd=tcp:10.0.2.100:3128-cmd:${pkgs.mkFake "keystone-0.1.0" { }}/bin/keystone agent proxy-relay --sandbox my-app /var/lib/keystone-agent/my-app/state/proxy.sock,restrict=on" cmd;
    expected = true;
  };
  test_egress_open_unrestricted = { expr = has "restrict=on" (one { egress.mode = "open"; }).hypervisor.x.command; expected = false; };
  test_egress_none_restricted = { expr = has ",restrict=on" (one { egress.mode = "none"; }).hypervisor.x.command; expected = true; };
  test_bridge_proxy_on_control_nic = { expr = has "user,id=ks-ctl,restrict=on,hostfwd=tcp:127.0.0.1:2300-10.0.2.15:22,guestfwd=tcp:10.0.2.100:3128-cmd:" cmdInfra; expected = true; };
  test_bridge_defaults_open = { expr = [ c.keystone.agent.sandboxes.infra.egress.mode registry.sandboxes.infra.egress.mode ]; expected = [ "open" "open" ]; };
  test_assert_egress_needs_user = {
    expr = (one { network.mode = "tap"; egress.mode = "allowlist"; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.egress\\.mode is \"allowlist\" but keystone\\.agent\\.sandboxes\\.x\\.network\\.mode is \"tap\".*set .* = \"open\".*";
  };
  test_egress_in_registry = {
    expr = (builtins.fromJSON (one { egress = { mode = "none"; allow = [ "pypi.corp.example" ]; upstreams.anthropic = "https://gw.example/a"; upstreamCA = "/etc/ssl/corp.pem"; }; }).config.environment.etc."keystone/agent/declared.json".text).sandboxes.x.egress;
    expected = { mode = "none"; allow = [ "pypi.corp.example" ]; upstreams.anthropic = "https://gw.example/a"; upstreamCA = "/etc/ssl/corp.pem"; };
  };
  test_assert_upstream_https = {
    expr = (one { egress.upstreams.anthropic = "http://gw.example/a"; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.egress\\.upstreams\\.anthropic is \"http://gw\\.example/a\": want an https URL.*";
  };
  test_assert_upstream_no_query = { expr = (one { egress.upstreams.openai = "https://gw.example/o?k=1"; }).toplevel; expectError = ".*egress\\.upstreams\\.openai is .*want an https URL.*"; };
  test_upstream_ok = { expr = (one { egress.upstreams = { anthropic = "https://gw.example/a"; gemini = "https://127.0.0.1:8443"; }; }).failedAssertions; expected = [ ]; };
  test_assert_upstream_ca_absolute = { expr = (one { egress.upstreamCA = "corp.pem"; }).toplevel; expectError = ".*egress\\.upstreamCA \"corp\\.pem\" is not an absolute path.*"; };
  test_credentials_file = {
    expr = with (one { credentialsFile = "/run/agenix/keystone-x"; }).config.systemd.services.keystone-agent-hostd-x.serviceConfig; [ LoadCredential (lib.hasSuffix " hostd x --credentials %d/credentials" ExecStart) ];
    expected = [ [ "credentials:/run/agenix/keystone-x" ] true ];
  };
  test_no_credentials_file = { expr = svc.keystone-agent-hostd-my-app.serviceConfig.LoadCredential; expected = [ ]; };
  # the guest's session environment (prepare-guest): the proxy's variables for
  # the egress mode, a placeholder for each key the file names (names only)
  test_prepare_guest_environment = {
    expr = let s = (one { credentialsFile = "/run/agenix/keystone-x"; egress.mode = "open"; }).config.systemd.services.keystone-agent-prepare-x; in
      [ s.serviceConfig.LoadCredential (has ''prepare-guest x --project /home/alice/src/my-app --dir "$dir" --egress open --credentials "$CREDENTIALS_DIRECTORY/credentials"'' s.script) ];
    expected = [ [ "credentials:/run/agenix/keystone-x" ] true ];
  };
  test_prepare_guest_without_credentials = {
    expr = with svc.keystone-agent-prepare-my-app; [ serviceConfig.LoadCredential (has "--egress allowlist\n" script) (has "--credentials" script) ];
    expected = [ [ ] true false ];
  };
  test_assert_credentials_not_in_store = {
    expr = (one { credentialsFile = "${builtins.storeDir}/abc-keys"; }).toplevel;
    expectError = ".*credentialsFile is in the Nix store.*";
  };
  test_control_nic_in_guest = {
    # (user mode has none: test_user_no_control_nic)
    expr = gi.systemd.network.networks."10-keystone-control";
    expected = {
      matchConfig.MACAddress = "02:6b:73:00:00:01";
      address = [ "10.0.2.15/24" ];
      networkConfig = { LinkLocalAddressing = "no"; IPv6AcceptRA = false; };
      linkConfig.RequiredForOnline = "no";
    };
  };
  test_tap_control_nic = {
    expr = let h = one { network.mode = "tap"; sshPort = 2401; }; in map (s: has s h.hypervisor.x.command) [ "tap,id=ks-x,ifname=ks-x,script=no,downscript=no" "hostfwd=tcp:127.0.0.1:2401-10.0.2.15:22" ];
    expected = [ true true ];
  };
  test_no_project_in_command = { expr = has "/home/alice/src/my-app" cmd; expected = false; };
  test_host_store_not_shared = { expr = has "path=/nix/store," cmd; expected = false; };
  test_store_disk = { expr = has "read-only=on,file=${g.microvm.storeDisk}" cmd || has "file=${g.microvm.storeDisk},if=none" cmd; expected = true; };

  # --- host units and their order ---
  test_prepare_unit = {
    expr = with svc.keystone-agent-prepare-my-app; [ serviceConfig.Type serviceConfig.User serviceConfig.Group serviceConfig.RemainAfterExit partOf ];
    expected = [ "oneshot" "alice" "users" true [ "microvm@my-app.service" ] ];
  };
  test_prepare_hardened = {
    expr = with svc.keystone-agent-prepare-my-app; [ serviceConfig.ProtectSystem serviceConfig.ProtectHome serviceConfig.ReadWritePaths serviceConfig.PrivateNetwork serviceConfig.NoNewPrivileges serviceConfig.CapabilityBoundingSet unitConfig.RequiresMountsFor ];
    expected = [ "strict" "read-only" [ "/var/lib/keystone-agent/my-app" ] true true "" [ "/home/alice/src/my-app" "/var/lib/keystone-agent/my-app" ] ];
  };
  test_hostd_hardened = {
    expr = with svc.keystone-agent-hostd-my-app; [ serviceConfig.ProtectSystem serviceConfig.ReadWritePaths (serviceConfig ? PrivateNetwork) serviceConfig.RestrictAddressFamilies unitConfig.RequiresMountsFor ];
    expected = [ "strict" [ "/var/lib/keystone-agent/my-app" "/home/alice/src/my-app" ] false [ "AF_UNIX" "AF_INET" "AF_INET6" ] [ "/home/alice/src/my-app" "/var/lib/keystone-agent/my-app" ] ];
  };

  # --- a rebuild does not restart a running sandbox (issue 10, item 5) ---
  test_no_restart_on_rebuild = {
    expr = [ c.microvm.vms.my-app.restartIfChanged svc."microvm@my-app".serviceConfig.X-RestartIfChanged svc."microvm-virtiofsd@infra".serviceConfig.X-RestartIfChanged svc.keystone-agent-prepare-my-app.restartIfChanged ];
    expected = [ false [ "" false ] [ "" false ] false ];
  };
  test_virtiofsd_after_prepare = {
    expr = with svc."microvm-virtiofsd@infra"; [ requires after unitConfig.RequiresMountsFor ];
    expected = [ [ "keystone-agent-prepare-infra.service" ] [ "keystone-agent-prepare-infra.service" ] [ "/var/lib/keystone-agent/infra" ] ];
  };
  test_no_virtiofsd_dropin_for_9p = { expr = svc."microvm-virtiofsd@my-app".requires or [ ]; expected = [ ]; };

  # --- tap and macvtap for the owner, not microvm.nix's user `microvm` (issue 10, item 3) ---
  test_tap_for_owner = {
    expr = let up = (one { network.mode = "tap"; vcpus = 2; }).guests.x.config.microvm.binScripts.tap-up; in
      [ (has "tuntap add name 'ks-x' mode tap user alice vnet_hdr multi_queue" up) (has "microvm" up) ];
    expected = [ true false ];
  };
  test_macvtap_for_owner = {
    expr = let up = (one { network = { mode = "macvtap"; macvtap.link = "enp1s0"; }; }).guests.x.config.microvm.binScripts.macvtap-up; in
      [ (has "chown alice:kvm \"/dev/tap$(< \"/sys/class/net/ks-x/ifindex\")\"" up) (has "microvm" up) (has "link add link 'enp1s0' name 'ks-x'" up) ];
    expected = [ true false true ];
  };
  test_prepare_clones_trusted_project = {
    expr = has "git -c core.hooksPath=/dev/null clone --quiet --no-local --no-hardlinks -- /home/alice/src/my-app \"$dir/workspace.tmp\"" svc.keystone-agent-prepare-my-app.script;
    expected = true;
  };
  test_prepare_keys = {
    expr = map (s: has s svc.keystone-agent-prepare-my-app.script) [
      ''ssh-keygen -q -t ed25519 -N "" -C "keystone-agent@my-app" -f "$state/client_ed25519"''
      ''-f "$state/guest/ssh_host_ed25519_key"''
      ''mv -f "$state/guest/authorized_keys.tmp" "$state/guest/authorized_keys"''
      "umask 077"
    ];
    expected = [ true true true true ];
  };
  test_prepare_links_runner = { expr = has ''ln -sfn ${g.microvm.declaredRunner} "$state/current"'' svc.keystone-agent-prepare-my-app.script; expected = true; };
  test_authorized_keys_option = {
    expr = has "printf '%s\\n' 'ssh-ed25519 AAAAC3Nza alice@laptop'" (one { authorizedKeys = [ "ssh-ed25519 AAAAC3Nza alice@laptop" ]; }).config.systemd.services.keystone-agent-prepare-x.script;
    expected = true;
  };
  test_vm_unit_order = {
    expr = with svc."microvm@my-app"; [ requires after unitConfig.RequiresMountsFor ];
    expected = [ [ "keystone-agent-prepare-my-app.service" ] [ "keystone-agent-prepare-my-app.service" ] [ "/var/lib/keystone-agent/my-app" ] ];
  };
  test_vm_unit_runs_as_owner = {
    expr = with svc."microvm@my-app".serviceConfig; [ User Group SupplementaryGroups WorkingDirectory ExecStop Restart ];
    expected = [ "alice" "users" [ "kvm" ] "/var/lib/keystone-agent/my-app/state" [ "" "/var/lib/keystone-agent/my-app/state/booted/bin/microvm-shutdown" ] "on-failure" ];
  };
  test_vm_template_from_microvm = { expr = svc."microvm@".serviceConfig.ExecStart; expected = "/var/lib/microvms/%i/current/bin/microvm-run"; };
  test_hostd_unit = {
    expr = with svc.keystone-agent-hostd-my-app; [ serviceConfig.ExecStart serviceConfig.User bindsTo after wantedBy ];
    expected = [ "${pkgs.mkFake "keystone-0.1.0" { }}/bin/keystone agent hostd my-app" "alice" [ "microvm@my-app.service" ] [ "microvm@my-app.service" ] [ "microvm@my-app.service" ] ];
  };
  test_hostd_also_when_manual = { expr = svc ? keystone-agent-hostd-infra; expected = true; };
  test_hostd_auto_idle = { expr = (one { syncMode = "auto-idle"; }).config.systemd.services ? keystone-agent-hostd-x; expected = true; };
  test_tmpfiles = {
    expr = lib.filter (lib.hasInfix "my-app") c.systemd.tmpfiles.rules;
    expected = [ "d /var/lib/keystone-agent/my-app 0700 alice users -" "d /var/lib/keystone-agent/my-app/state 0700 alice users -" ];
  };
  test_polkit_owner_only = {
    expr = [ (has ''subject.user == "alice"'' c.security.polkit.extraConfig) (has ''unit == "microvm@my-app.service"'' c.security.polkit.extraConfig) ];
    expected = [ true true ];
  };

  # --- assertions: they name the option and the way out ---
  test_assert_duplicate_ports = {
    expr = (withSandboxes { a = app // { sshPort = 2400; }; b = app // { sshPort = 2400; }; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.a\\.sshPort and keystone\\.agent\\.sandboxes\\.b\\.sshPort are all 2400: give each sandbox its own.*";
  };
  test_assert_duplicate_ports_any_mode = {
    # the control NIC forwards the port in bridge mode too
    expr = (withSandboxes { a = app // { sshPort = 2400; }; b = app // { sshPort = 2400; network = { mode = "bridge"; bridge = "br0"; }; }; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.a\\.sshPort and keystone\\.agent\\.sandboxes\\.b\\.sshPort are all 2400.*";
  };
  test_assert_dir_whitespace = {
    expr = (one { dir = "/srv/my sandboxes/x"; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.dir \"/srv/my sandboxes/x\" contains whitespace or a comma.*choose a path without them.*";
  };
  test_assert_dir_comma = { expr = (one { dir = "/srv/a,b"; }).toplevel; expectError = ".*sandboxes\\.x\\.dir \"/srv/a,b\" contains whitespace or a comma.*"; };
  test_assert_state_dir_whitespace = {
    expr = (evalHost [ pkg users { keystone.agent.stateDir = "/srv/key stone"; keystone.agent.sandboxes.x = app; } ]).toplevel;
    expectError = ".*sandboxes\\.x\\.dir \"/srv/key stone/x\" contains whitespace.*";
  };
  test_assert_project_whitespace = { expr = (one { projectPath = "/home/alice/my app"; }).toplevel; expectError = ".*sandboxes\\.x\\.projectPath \"/home/alice/my app\" contains whitespace.*"; };
  test_project_comma_ok = { expr = (one { projectPath = "/home/alice/a,b"; }).failedAssertions; expected = [ ]; };
  test_assert_x86_64_only = {
    # an aarch64 host is refused with the reason (each guest too: guest-test.nix)
    expr = let arm = { _module.args.pkgs = lib.mkForce (pkgs // { stdenv = pkgs.stdenv // { hostPlatform = lib.systems.elaborate "aarch64-linux"; }; }); }; in
      lib.filter (lib.hasPrefix "keystone.agent: ") (evalHost [ arm pkg users { keystone.agent.sandboxes.x = app; } ]).failedAssertions;
    expected = [ "keystone.agent: this host is aarch64-linux; keystone agent runs on x86_64-linux only (the guests' CPU flags, kvm modules and runners are x86-specific)." ];
  };
  test_assert_interface_too_long = {
    expr = (withSandboxes { a-very-long-name = app // { network.mode = "tap"; }; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.a-very-long-name\\.network\\.interface \"ks-a-very-long-name\" is 19 characters; interface ids are limited to 15: set .* to a shorter id or use a shorter sandbox name.*";
  };
  test_assert_interface_user_mode_ok = { expr = (withSandboxes { a-very-long-name = app; }).failedAssertions; expected = [ ]; };
  test_assert_interface_override = { expr = (withSandboxes { a-very-long-name = app // { network = { mode = "tap"; interface = "ks-long"; }; }; }).failedAssertions; expected = [ ]; };
  test_assert_bridge_needs_bridge = {
    expr = (one { network.mode = "bridge"; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.network\\.mode is \"bridge\" but keystone\\.agent\\.sandboxes\\.x\\.network\\.bridge is not set.*";
  };
  test_assert_macvtap_needs_link = { expr = (one { network.mode = "macvtap"; }).toplevel; expectError = ".*network\\.macvtap\\.link is not set.*"; };
  test_assert_memory_minimum = {
    expr = (one { memory = 1024; }).toplevel;
    expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.memory is 1024 MiB; the minimum is 2048.*";
  };
  test_memory_minimum_ok = { expr = (one { memory = 2048; }).failedAssertions; expected = [ ]; };
  test_vcpus_positive = { expr = (one { vcpus = 0; }).toplevel; expectError = ".*vcpus.*"; };
  test_assert_owner_declared = { expr = (one { owner = "mallory"; }).toplevel; expectError = ".*keystone\\.agent\\.sandboxes\\.x\\.owner \"mallory\" is not declared in users\\.users.*"; };
  test_assert_owner_not_root = { expr = (evalHost [ pkg { users.users.root = { isSystemUser = true; group = "root"; }; keystone.agent.sandboxes.x = app // { owner = "root"; }; } ]).toplevel; expectError = ".*owner must not be root.*"; };
  test_assert_invalid_name = { expr = (withSandboxes { My_App = app; }).toplevel; expectError = ".*invalid sandbox name \"My_App\".*"; };
  test_assert_dir_inside_project = { expr = (one { dir = "/home/alice/src/my-app/.sandbox"; }).toplevel; expectError = ".*projectPath and keystone\\.agent\\.sandboxes\\.x\\.dir overlap.*"; };
  test_project_path_absolute = { expr = (one { projectPath = "src/app"; }).toplevel; expectError = ".*projectPath.*"; };
  test_network_mode_enum = { expr = (one { network.mode = "nat"; }).toplevel; expectError = ".*network\\.mode.*"; };
  test_claude_needs_consent = {
    expr = (one { agent = "claude"; }).toplevel;
    expectError = ".*keystone\\.guest\\.agents contains \"claude\", whose licence is unfree.*keystone\\.agent\\.allowUnfreeAgents.*";
  };
  test_template_host = {
    # templates/host/configuration.nix as a user gets it: no failed assertion, Claude Code accepted there
    expr = let t = evalHost [ pkg ../templates/host/configuration.nix ]; in
      [ t.failedAssertions t.config.keystone.agent.allowUnfreeAgents t.config.keystone.agent.sandboxes.my-app.agent ];
    expected = [ [ ] [ "claude" ] "claude" ];
  };
  test_template_host_evaluates = { expr = (evalHost [ pkg ../templates/host/configuration.nix ]).toplevel; };
  test_template_host_flake = {
    # the template's own flake.nix, as `nixos-rebuild --flake .#workstation` calls it
    # (nixosSystem stands in by evalHost): its nixpkgs allows nothing unfree wholesale
    expr = let
      nixpkgs = { lib = lib // { nixosSystem = { modules, ... }: evalHost modules; }; };
      keystone = { nixosModules.default = pkg; };
      t = ((import ../templates/host/flake.nix).outputs { inherit nixpkgs keystone; }).nixosConfigurations.workstation;
      nc = t.config.nixpkgs.config or { };
    in [ t.failedAssertions t.config.keystone.agent.sandboxes.my-app.agent ((nc.allowUnfree or false) || nc ? allowUnfreePredicate) ];
    expected = [ [ ] "claude" false ];
  };
  test_template_host_without_consent = {
    # one assertion says it, the guest module's (no second one on the host side)
    expr = (evalHost [ pkg ../templates/host/configuration.nix { keystone.agent.allowUnfreeAgents = lib.mkForce [ ]; } ]).failedAssertions;
    expected = [ "guest my-app: keystone.guest.agents contains \"claude\", whose licence is unfree (claude-code): accept it with keystone.guest.allowUnfreeAgents = [ \"claude\" ] (declared sandboxes: keystone.agent.allowUnfreeAgents), or remove \"claude\" from the agents." ];
  };
  # nixpkgs' conventions: mkEnableOption, mkPackageOption, overlays.default, a formatter
  test_enable_option = { expr = with (evalHost [ ]).options.keystone.agent.enable; [ type.name default ]; expected = [ "bool" false ]; };
  test_package_option = { expr = (evalHost [ ]).options.keystone.agent.package.defaultText.text; expected = "pkgs.keystone"; };
  test_overlay = { expr = lib.attrNames (flake.overlays.default pkgs pkgs); expected = [ "keystone" "keystone-unwrapped" ]; };
  test_formatter = { expr = flake.formatter.x86_64-linux == pkgs.nixfmt-rfc-style; expected = true; };
  test_package_stamp_is_the_version = {
    # the Go build is stamped with the release version only (no commit, no
    # date), so a change outside go/ does not rebuild it
    expr = (import ../lib/package.nix {
      inherit lib; buildGoModule = a: a; installShellFiles = null;
      stdenv = { buildPlatform.canExecute = _: true; hostPlatform = { }; };
    }).ldflags;
    expected = [ "-s" "-w" "-X github.com/keystone-agent/keystone/internal/cli.Version=0.1.0" ];
  };
  test_agent_enum = { expr = (one { agent = "cursor"; }).toplevel; expectError = ".*agent.*"; };
}

# The NixOS guest every keystone agent sandbox runs, declared or imperative.
#
# Imported by the host module into microvm.vms.<name>.config (declared
# sandboxes) and by the per-sandbox flake through nixosModules.guest
# (imperative sandboxes), so the two cannot drift. microvm.nix's guest module
# (nixos-modules/microvm) is brought by the importer, not imported here.
#
# What the guest may see of the host: the sandbox's workspace clone at
# /workspace and the read-only "keystone" share with its SSH host key and
# authorized_keys. Its own closure comes on a read-only disk image. Nothing
# else: not the host's /nix/store, no credentials, no project directory, no
# home directory.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkDefault mkIf types;
  k = import ../lib { inherit lib; };
  cfg = config.keystone.guest;
  rt = k.runtime;

  keysMount = "/mnt/keystone";
  authorizedKeysDir = "/run/keystone-ssh";

  # Agents: the nixpkgs attribute, the program, and the flag that turns off
  # permission prompts. A sandbox exists so that agents can act without asking.
  agentTable = {
    claude-code = { bin = "claude"; flags = [ "--dangerously-skip-permissions" ]; };
    gemini-cli = { bin = "gemini"; flags = [ "--yolo" ]; };
    codex = { bin = "codex"; flags = [ "--dangerously-bypass-approvals-and-sandbox" ]; };
  };
  agentOption = attr: {
    enable = mkOption {
      type = types.bool;
      default = lib.elem attr cfg.agents;
      defaultText = lib.literalExpression ''lib.elem "${attr}" config.keystone.guest.agents'';
      description = "Whether to install ${attr}, wrapped to run without permission prompts.";
    };
    package = mkOption {
      type = types.nullOr types.package;
      default = pkgs.${attr} or null;
      defaultText = lib.literalExpression "pkgs.${attr} or null";
      description = "The ${attr} package (null when this nixpkgs has none).";
    };
  };
  # The wrapper keeps the program's name, so `keystone agent exec -- claude …`
  # and interactive shells get the same unprompted agent.
  wrapAgent = attr: a:
    pkgs.writeShellScriptBin agentTable.${attr}.bin ''
      export IS_SANDBOX=1
      exec ${a.package}/bin/${agentTable.${attr}.bin} ${lib.escapeShellArgs agentTable.${attr}.flags} "$@"
    '';
  enabledAgents = lib.filterAttrs (_: a: a.enable) cfg.agent;

  userNet = cfg.network.mode == "user";
  ctl = k.control;
  system = pkgs.stdenv.hostPlatform.system;

  # Run once per boot before sshd: install the keys from the read-only share
  # (root-owned copies, so sshd's permission checks pass), enable the password
  # fallback only when the helper asked for it, adopt the workspace owner's
  # uid/gid (9p with security_model=none shows host owners as they are), and
  # take the sandbox name from the kernel command line (imperative runner).
  setupScript = ''
    set -eu
    log() { echo "[keystone-agent] $*"; }
    src=${keysMount}
    install -d -m 0755 /etc/ssh ${authorizedKeysDir}
    if [ -s "$src/ssh_host_ed25519_key" ]; then
      install -m 0600 -o root -g root "$src/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
      ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
    else
      log "no ssh_host_ed25519_key in the keystone share; sshd generates one (the helper cannot pin it)"
    fi
    install -m 0644 -o root -g root /dev/null ${authorizedKeysDir}/sandbox
    if [ -f "$src/authorized_keys" ]; then
      install -m 0644 -o root -g root "$src/authorized_keys" ${authorizedKeysDir}/sandbox
    fi
    if [ -e "$src/password-auth" ]; then
      log "no SSH key on the host: password login enabled for sandbox"
      echo 'sandbox:sandbox' | chpasswd
    fi

    uid=$(stat -c %u /workspace) gid=$(stat -c %g /workspace)
    if [ "$uid" = 0 ]; then
      log "/workspace is owned by root on the host; keeping uid $(id -u sandbox) for sandbox"
    elif [ "$uid" != "$(id -u sandbox)" ] || [ "$gid" != "$(id -g sandbox)" ]; then
      groupmod -o -g "$gid" sandbox
      usermod -o -u "$uid" -g "$gid" sandbox
      chown -R sandbox:sandbox /home/sandbox
    fi

    name=$(sed -n 's/.*keystone\.name=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
    if [ -n "$name" ]; then
      echo "$name" > /proc/sys/kernel/hostname
    fi
  '';
in
{
  imports = [ ./guest-egress.nix ./guest-ssh-ready.nix ];

  options.keystone.guest = {
    name = mkOption {
      type = types.strMatching k.namePattern;
      description = "Sandbox name: the guest's hostname and the qemu process name.";
      example = "my-app";
    };
    runtime = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Imperative sandboxes: build one runner for every sandbox of this
        configuration. Per-sandbox values (name, memory, vcpus, SSH port,
        workspace, guest dir, QMP socket, MAC) are placeholders that the
        runner replaces with the KEYSTONE_* environment at run time
        (docs/runner-contract.md).
      '';
    };
    memory = mkOption { type = types.ints.positive; default = 8192; description = "Guest RAM in MiB."; };
    vcpus = mkOption { type = types.ints.positive; default = 4; description = "Guest vCPUs."; };
    nested = mkOption {
      type = types.bool;
      default = true;
      description = "Expose the host CPU's virtualisation extensions (VMX/SVM) and load kvm in the guest.";
    };
    sshPort = mkOption {
      type = types.port;
      default = 2223;
      description = "Host TCP port on 127.0.0.1 forwarded to the guest's sshd: on the one NIC in `user` mode, on the restricted control NIC in every other mode.";
    };
    network = {
      mode = mkOption { type = types.enum [ "user" "tap" "macvtap" "bridge" ]; default = "user"; description = "How the guest reaches the network."; };
      id = mkOption {
        type = types.str;
        default = if lib.elem cfg.network.mode [ "tap" "macvtap" ] then k.ifName cfg.name else "ks-net";
        defaultText = lib.literalExpression ''if tap or macvtap then "ks-''${name}" else "ks-net"'';
        description = "Interface id: the host interface for tap and macvtap, else only qemu's netdev id.";
      };
      mac = mkOption { type = types.strMatching "([0-9a-f]{2}:){5}[0-9a-f]{2}"; default = k.macFor cfg.name; defaultText = "derived from the name"; description = "Guest MAC address."; };
      bridge = mkOption { type = types.nullOr types.str; default = null; description = "Host bridge (mode = bridge)."; };
      macvtap = {
        link = mkOption { type = types.nullOr types.str; default = null; description = "Host link (mode = macvtap)."; };
        mode = mkOption { type = types.enum [ "private" "vepa" "bridge" "passthru" "source" ]; default = "bridge"; description = "macvtap mode."; };
      };
    };
    workspace = {
      source = mkOption { type = types.str; description = "Host directory shared read-write at /workspace: the sandbox's clone, never the project."; };
      proto = mkOption {
        type = types.enum [ "9p" "virtiofs" ];
        default = "9p";
        description = "Share protocol. virtiofs needs the host's microvm-virtiofsd@ unit, so only declared sandboxes can use it.";
      };
      socket = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "virtiofsd socket (absolute: virtiofsd and qemu run in different directories); null for 9p.";
      };
    };
    guestDir = mkOption {
      type = types.str;
      description = "Host directory shared read-only as 9p tag `keystone`: ssh_host_ed25519_key, authorized_keys, password-auth.";
    };
    volumeSize = mkOption { type = types.ints.positive; default = 8192; description = "Size in MiB of the sparse image (state/var.img) that keeps the guest's /var across restarts."; };
    agents = mkOption {
      type = types.listOf (types.enum (lib.attrNames agentTable));
      default = [ ];
      example = [ "claude-code" "codex" ];
      description = "Agents to install, each wrapped to run without permission prompts.";
    };
    agent = lib.mapAttrs (attr: _: agentOption attr) agentTable;
  };

  config = {
    keystone.guest = mkIf cfg.runtime {
      name = rt.hostName;
      memory = rt.memory;
      vcpus = rt.vcpus;
      sshPort = rt.sshPort;
      workspace.source = rt.workspace;
      guestDir = rt.guestDir;
      network = {
        mac = rt.mac;
        id = mkIf (cfg.network.mode == "tap") rt.tapInterface;
        bridge = rt.bridge;
      };
    };

    assertions = lib.mapAttrsToList (attr: a: {
      assertion = a.package != null;
      message = "keystone.guest.agent.${attr}.enable: this nixpkgs has no package `${attr}`; set keystone.guest.agent.${attr}.package or use a newer nixpkgs.";
    }) enabledAgents ++ [
      { assertion = cfg.network.mode == "bridge" -> cfg.network.bridge != null;
        message = "keystone.guest.network.bridge must be set when keystone.guest.network.mode is \"bridge\"."; }
      { assertion = cfg.network.mode == "macvtap" -> cfg.network.macvtap.link != null;
        message = "keystone.guest.network.macvtap.link must be set when keystone.guest.network.mode is \"macvtap\"."; }
      { assertion = cfg.runtime -> cfg.workspace.proto == "9p" && lib.elem cfg.network.mode [ "user" "tap" "bridge" ];
        message = "keystone.guest.runtime: imperative sandboxes share /workspace over 9p and use user, tap or bridge networking (macvtap and virtiofs need host units: declare the sandbox in keystone.agent.sandboxes)."; }
      { assertion = lib.elem system k.systems;
        message = "keystone.guest: this guest is ${system}; keystone builds ${lib.concatStringsSep " and " k.systems} guests only (their CPU flags, kvm modules and runner are x86-specific)."; }
    ];

    networking.hostName = mkDefault cfg.name;
    # the system's store path must not carry the placeholder name
    system.name = mkIf cfg.runtime "keystone-sandbox";

    microvm = {
      hypervisor = "qemu";
      # 2048 becomes 2050 (k.qemuMemory); the imperative runner bumps its
      # run-time value the same way (lib/runner.nix)
      mem = k.qemuMemory cfg.memory;
      vcpu = cfg.vcpus;
      # relative to the runner's working directory: the sandbox's state/
      socket = if cfg.runtime then rt.qmpSocket else "qmp.sock";
      # The user NIC is built below (extraArgs): microvm.nix's interfaces
      # cannot say restrict=on or forward the proxy to a command.
      interfaces = lib.optional (!userNet) ({
        type = cfg.network.mode;
        inherit (cfg.network) id mac;
      } // lib.optionalAttrs (cfg.network.mode == "bridge") { inherit (cfg.network) bridge; }
        // lib.optionalAttrs (cfg.network.mode == "macvtap") { macvtap = { inherit (cfg.network.macvtap) link mode; }; });
      # The guest's own closure on a read-only erofs disk, not a share of
      # the host's /nix/store: the guest sees no host file outside /workspace.
      # One image per guest configuration, shared by its sandboxes.
      storeOnDisk = true;
      storeDiskType = "erofs";
      shares = [
        ({ tag = "workspace"; source = cfg.workspace.source; mountPoint = "/workspace"; inherit (cfg.workspace) proto; securityModel = "none"; }
          // lib.optionalAttrs (cfg.workspace.socket != null) { inherit (cfg.workspace) socket; })
      ];
      volumes = [ { image = "var.img"; mountPoint = "/var"; size = cfg.volumeSize; } ];
      # The keys share is added here rather than in microvm.shares because
      # microvm.nix has no read-only shares: readonly=on makes qemu refuse
      # writes, whatever the guest's root does. microvm.nix attaches shares
      # over PCI (virtio-9p-pci) because shares exist.
      qemu.extraArgs = [
        "-fsdev" "local,id=ks-keys,path=${cfg.guestDir},security_model=none,readonly=on"
        "-device" "virtio-9p-pci,fsdev=ks-keys,mount_tag=keystone"
      ] ++ lib.optionals (!cfg.nested && !cfg.runtime) [ "-cpu" "host,+x2apic,-sgx,-vmx,-svm" ]
      # The user NIC: SSH on 127.0.0.1 only (never reachable from other
      # hosts) and the host proxy (./guest-egress.nix: restricted to them
      # unless the egress mode is open).
      ++ lib.optionals userNet [
        "-netdev" "user,id=${cfg.network.id},hostfwd=tcp:127.0.0.1:${toString cfg.sshPort}-:22${cfg.netdevOptions}"
        "-device" "virtio-net-pci,netdev=${cfg.network.id},mac=${cfg.network.mac},romfile="
      ]
      # The control NIC (lib/default.nix `control`) of every mode but user:
      # restrict=on lets nothing out, the SSH forward and the proxy still
      # come in. microvm.nix's interfaces cannot say restrict=on, hence extraArgs.
      ++ lib.optionals (!userNet) [
        "-netdev" "user,id=${ctl.id},restrict=on,hostfwd=tcp:127.0.0.1:${toString cfg.sshPort}-${ctl.address}:22${cfg.netdevOptions}"
        "-device" "virtio-net-pci,netdev=${ctl.id},mac=${ctl.mac},romfile="
      ];
      kernelParams = lib.optional cfg.runtime "keystone.name=${rt.hostName}";
    };

    fileSystems.${keysMount} = {
      device = "keystone";
      fsType = "9p";
      options = [ "trans=virtio" "version=9p2000.L" "ro" "nodev" "nosuid" "noexec" "x-systemd.requires=systemd-modules-load.service" ];
    };

    # Fast boot: quiet serial console (115200 baud printk is slow), networkd
    # without waiting for the network, no dhcpcd, no docs.
    boot.kernelParams = [ "quiet" "udev.log_level=3" ];
    boot.consoleLogLevel = 3;
    boot.initrd.verbose = false;
    boot.kernelModules = lib.optionals (cfg.nested || cfg.runtime) [ "kvm-intel" "kvm-amd" ];
    networking.useNetworkd = true;
    networking.dhcpcd.enable = false;
    systemd.network.wait-online.enable = false;
    # The control NIC: a fixed address, no route, no DNS, so the guest's own
    # traffic takes the chosen mode's NIC (DHCP, NixOS' default network).
    # Sorted before NixOS' 99-ethernet-default-dhcp, so it wins for this MAC.
    systemd.network.networks."10-keystone-control" = mkIf (!userNet) {
      matchConfig.MACAddress = ctl.mac;
      address = [ "${ctl.address}/${toString ctl.prefixLength}" ];
      networkConfig = { LinkLocalAddressing = "no"; IPv6AcceptRA = false; };
      linkConfig.RequiredForOnline = "no";
    };
    documentation.enable = mkDefault false;

    users.mutableUsers = true;
    users.groups.sandbox.gid = 1000;
    users.users.sandbox = {
      isNormalUser = true;
      uid = 1000;
      group = "sandbox";
      extraGroups = [ "wheel" "kvm" ];
      home = "/home/sandbox";
      # locked until the helper asks for the password fallback (setupScript)
      hashedPassword = "!";
    };
    security.sudo.wheelNeedsPassword = false;

    services.openssh = {
      enable = true;
      hostKeys = [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ];
      authorizedKeysFiles = [ "${authorizedKeysDir}/%u" ];
      settings = {
        PermitRootLogin = "no";
        AllowUsers = [ "sandbox" ];
        # effective only for an account with a password, i.e. after password-auth
        PasswordAuthentication = true;
        KbdInteractiveAuthentication = false;
      };
    };

    systemd.services.keystone-guest-setup = {
      description = "Install the SSH keys and workspace owner provided by keystone agent";
      wantedBy = [ "multi-user.target" ];
      requiredBy = [ "sshd.service" ];
      before = [ "sshd.service" ];
      unitConfig.RequiresMountsFor = [ keysMount "/workspace" ];
      path = [ pkgs.coreutils pkgs.gnused pkgs.shadow pkgs.openssh ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
      script = setupScript;
    };

    environment.systemPackages = [
      pkgs.git pkgs.python3 pkgs.vim pkgs.curl pkgs.wget pkgs.htop pkgs.tmux
    ] ++ lib.mapAttrsToList wrapAgent enabledAgents;
    programs.direnv.enable = true; # installs direnv and its shell hook
    # an identity for commits made in the sandbox (agents commit with plain
    # `git commit`); sync keeps it, so the host's log shows who committed
    programs.git = {
      enable = true;
      config.user = { name = mkDefault "keystone agent"; email = mkDefault "agent@sandbox.invalid"; };
    };
    environment.variables.EDITOR = mkDefault "vim";
    environment.etc."claude-code/managed-settings.json" = mkIf (enabledAgents ? claude-code) {
      text = builtins.toJSON { permissions.defaultMode = "bypassPermissions"; };
    };

    system.stateVersion = mkDefault "25.05";
  };
}

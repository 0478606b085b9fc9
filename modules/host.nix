# Host implementation: the keystone helper, and for every declared sandbox
# keystone.agent.sandboxes.<name>
#   - microvm.vms.<name>: a microvm.nix guest running ./guest.nix
#   - keystone-agent-prepare-<name>: clone the project, generate keys (as the owner)
#   - microvm@<name> (microvm.nix's unit) run as the owner in <dir>/state
#   - keystone-agent-hostd-<name>: the sandbox's host daemon (sync watcher, host-side services)
#   - /etc/keystone/agent/declared.json: what `keystone agent` reads
# microvm.nix's host module (imported by the flake's nixosModules.host) is
# enabled only when there are microvm.vms: importing keystone declares
# nothing, enables no setuid bridge helper and no KSM.
# A host rebuild never restarts a running sandbox (docs/nixos.md, "What a
# rebuild does"): its units have restartIfChanged = false, and the new guest
# boots at the sandbox's next start.
# No modulesPath imports: the module loads in the offline evaluator (nix-checks/).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkIf mapAttrs' nameValuePair filterAttrs;
  cfg = config.keystone.agent;
  enabled = filterAttrs (_: sb: sb.enable) cfg.sandboxes;
  active = cfg.enable || enabled != { };

  groupOf = sb: config.users.users.${sb.owner}.group or "users";
  stateOf = sb: "${sb.dir}/state";
  prepareUnit = name: "keystone-agent-prepare-${name}";
  vmUnit = name: "microvm@${name}";
  hostdUnit = name: "keystone-agent-hostd-${name}";
  runnerOf = name: config.microvm.vms.${name}.config.config.microvm.declaredRunner;

  # Bridges qemu-bridge-helper may attach guests to: the declared sandboxes'
  # and those imperative sandboxes may use (keystone.agent.bridges).
  bridges = lib.unique (cfg.bridges
    ++ lib.concatMap (sb: lib.optional (sb.network.mode == "bridge" && sb.network.bridge != null) sb.network.bridge) (lib.attrValues enabled));

  # Confinement shared by the prepare and host daemon units: they run the owner's
  # git and keystone on the owner's files, and may write only the sandbox
  # directory (and, for sync, the project).
  hardening = {
    ProtectSystem = "strict";
    ProtectHome = "read-only";
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    UMask = "0077";
  };

  guestFor = name: sb: {
    imports = [ ./guest.nix (import ./owned-interfaces.nix { inherit (sb) owner; }) ] ++ sb.extraModules;
    keystone.guest = {
      inherit name;
      inherit (sb) memory vcpus nested sshPort agent;
      inherit (cfg) allowUnfreeAgents;
      network = {
        inherit (sb.network) mode mac bridge;
        id = if lib.elem sb.network.mode [ "tap" "macvtap" ] then sb.network.interface else "ks-net";
        macvtap = { inherit (sb.network.macvtap) link mode; };
      };
      workspace = {
        source = "${sb.dir}/workspace";
        proto = sb.share;
        # virtiofsd runs in /var/lib/microvms/<name>, qemu in <dir>/state
        socket = if sb.share == "virtiofs" then "${stateOf sb}/virtiofs-workspace.sock" else null;
      };
      guestDir = "${stateOf sb}/guest";
      # the host proxy (docs/egress.md): qemu runs the relay per guest connection
      egress = sb.egress.mode;
      proxyCommand = "${cfg.package}/bin/keystone agent proxy-relay --sandbox ${name} ${stateOf sb}/proxy.sock";
    } // lib.optionalAttrs (sb.agents != null) { inherit (sb) agents; };
  };

  # Named fragments of the prepare script; it runs as the owner, and runs the
  # host's git only against the owner's own project (never the workspace).
  # The clone is made beside the workspace and renamed, so a failed clone
  # never leaves a half workspace; an existing workspace is never replaced.
  cloneWorkspace = sb: ''
    if [ ! -e "$dir/workspace" ] && [ ! -L "$dir/workspace" ]; then
      log "cloning ${sb.projectPath} into $dir/workspace"
      rm -rf "$dir/workspace.tmp"
      git -c core.hooksPath=/dev/null clone --quiet --no-local --no-hardlinks -- ${lib.escapeShellArg sb.projectPath} "$dir/workspace.tmp"
      mv -T "$dir/workspace.tmp" "$dir/workspace"
    elif [ ! -d "$dir/workspace/.git" ]; then
      log "$dir/workspace exists but is not a git clone: move it away (or remove it) to get a fresh clone"
      exit 1
    fi
  '';
  generateKeys = name: sb: ''
    (
      umask 077
      mkdir -p "$state/guest"
      [ -e "$state/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "keystone-agent@${name}" -f "$state/client_ed25519"
      [ -e "$state/guest/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -C "${name}" -f "$state/guest/ssh_host_ed25519_key"
      {
        cat "$state/client_ed25519.pub"
        ${lib.concatMapStrings (key: "printf '%s\\n' ${lib.escapeShellArg key}\n") sb.authorizedKeys}
      } > "$state/guest/authorized_keys.tmp"
      mv -f "$state/guest/authorized_keys.tmp" "$state/guest/authorized_keys"
    )
  '';
  # The session environment and git identity a start writes for imperative
  # sandboxes (docs/agents.md), from the owner's view of the project.
  writeGuestConf = name: sb: ''
    ${cfg.package}/bin/keystone agent prepare-guest ${name} --project ${lib.escapeShellArg sb.projectPath} --dir "$dir"
  '';
  # microvm@'s preStart links `booted` to `current` in its working directory
  linkRunner = name: ''
    ln -sfn ${runnerOf name} "$state/current"
  '';

  prepareService = name: sb: {
    description = "Prepare keystone agent sandbox '${name}' (workspace clone, keys)";
    partOf = [ "${vmUnit name}.service" ];
    # The VM requires this unit: restarting it would restart the VM. A
    # changed script (a new runner) takes effect at the VM's next start,
    # which, through partOf, starts this unit afresh.
    restartIfChanged = false;
    unitConfig.RequiresMountsFor = [ sb.projectPath sb.dir ];
    path = [ pkgs.git pkgs.openssh pkgs.coreutils ];
    serviceConfig = hardening // {
      Type = "oneshot";
      RemainAfterExit = true;
      User = sb.owner;
      Group = groupOf sb;
      SyslogIdentifier = prepareUnit name;
      ReadWritePaths = [ sb.dir ];
      # a local clone and key generation: no network at all
      PrivateNetwork = true;
      RestrictAddressFamilies = [ "AF_UNIX" ];
    };
    script = ''
      set -eu
      log() { echo "[keystone-agent] $*"; }
      dir=${lib.escapeShellArg sb.dir}
      state="$dir/state"
      ${cloneWorkspace sb}
      ${generateKeys name sb}
      ${writeGuestConf name sb}
      ${linkRunner name}
    '';
  };

  # A drop-in for microvm.nix's microvm@<name>: the VM runs as the owner (9p
  # with security_model=none needs qemu to be the workspace's owner), in
  # <dir>/state like an imperative sandbox, and a guest power-off stops it.
  vmDropIn = name: sb: {
    requires = [ "${prepareUnit name}.service" ];
    after = [ "${prepareUnit name}.service" ];
    unitConfig.RequiresMountsFor = [ sb.dir ];
    serviceConfig = {
      User = sb.owner;
      Group = groupOf sb;
      SupplementaryGroups = [ "kvm" ];
      WorkingDirectory = stateOf sb;
      ExecStop = [ "" "${stateOf sb}/booted/bin/microvm-shutdown" ];
      Restart = "on-failure";
    };
  };

  # virtiofsd shares <dir>/workspace, which the prepare unit clones
  virtiofsdDropIn = name: sb: {
    requires = [ "${prepareUnit name}.service" ];
    after = [ "${prepareUnit name}.service" ];
    unitConfig.RequiresMountsFor = [ sb.dir ];
  };

  hostdService = name: sb: {
    description = "Host daemon of keystone agent sandbox '${name}' (sync mode ${sb.syncMode})";
    bindsTo = [ "${vmUnit name}.service" ];
    after = [ "${vmUnit name}.service" ];
    wantedBy = [ "${vmUnit name}.service" ];
    unitConfig.RequiresMountsFor = [ sb.projectPath sb.dir ];
    environment.KEYSTONE_AGENT_DECLARED = cfg.registryFile;
    serviceConfig = hardening // {
      User = sb.owner;
      Group = groupOf sb;
      # the proxy's keys: systemd reads the file (root-owned 0400 is fine)
      # into the unit's credentials directory (%d), readable by it alone
      ExecStart = "${cfg.package}/bin/keystone agent hostd ${name}"
        + lib.optionalString (sb.credentialsFile != null) " --credentials %d/credentials";
      LoadCredential = lib.optional (sb.credentialsFile != null) "credentials:${sb.credentialsFile}";
      Restart = "on-failure";
      RestartSec = 5;
      SyslogIdentifier = hostdUnit name;
      # sync fast-forwards the project; SSH to the guest on 127.0.0.1;
      # systemd (AF_UNIX) says whether the VM runs
      ReadWritePaths = [ sb.dir sb.projectPath ];
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    };
  };

  registryEntry = name: sb: {
    inherit name;
    inherit (sb) projectPath dir sshPort memory vcpus nested syncMode owner agent;
    network = sb.network.mode;
    unit = "${vmUnit name}.service";
    # read by the host daemon's proxy on every change (keystone agent status shows it)
    egress = {
      inherit (sb.egress) mode allow upstreams;
    } // lib.optionalAttrs (sb.egress.upstreamCA != null) { inherit (sb.egress) upstreamCA; };
  };

  # The owner may start, stop and restart their sandbox's units without sudo.
  polkitRule = name: sb: ''
    polkit.addRule(function(action, subject) {
      if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == ${builtins.toJSON sb.owner}) {
        var unit = action.lookup("unit"), verb = action.lookup("verb");
        if ((unit == ${builtins.toJSON "${vmUnit name}.service"} || unit == ${builtins.toJSON "${prepareUnit name}.service"}) &&
            (verb == "start" || verb == "stop" || verb == "restart")) {
          return polkit.Result.YES;
        }
      }
    });
  '';
in
{
  imports = [ ./options.nix ./asserts.nix ];

  config = lib.mkMerge [ {
    # microvm.nix's host module only for VMs to run (it brings a setuid
    # bridge helper allowing every bridge, and KSM); a user's own
    # microvm.vms, or microvm.host.enable = true, still enable it
    microvm.host.enable = lib.mkDefault (config.microvm.vms != { });
  } (mkIf active {
    environment.systemPackages = [ cfg.package ];

    environment.etc."keystone/agent/declared.json".text = builtins.toJSON {
      version = 1;
      sandboxes = lib.mapAttrs registryEntry enabled;
    };

    microvm.vms = lib.mapAttrs (name: sb: {
      inherit (sb) autostart;
      config = guestFor name sb;
      # a rebuild must not kill a running agent: the new guest boots at the
      # next start (microvm.nix puts this on microvm@, its tap and virtiofsd units)
      restartIfChanged = false;
    }) enabled;

    # Only the bridges keystone's sandboxes use, instead of microvm.nix's
    # default `allow all` (a `lines` option: a user's own lines add to these).
    environment.etc."qemu/bridge.conf".text = lib.concatMapStrings (b: "allow ${b}\n") bridges;
    # The same setuid helper microvm.nix's host module installs, for hosts
    # whose only bridge users are imperative sandboxes.
    security.wrappers.qemu-bridge-helper = mkIf (bridges != [ ] && !config.microvm.host.enable && !config.virtualisation.libvirtd.enable) {
      source = "${pkgs.qemu-utils}/libexec/qemu-bridge-helper";
      owner = "root";
      group = "root";
      capabilities = "cap_net_admin+ep";
    };

    systemd.tmpfiles.rules = [ "d ${cfg.stateDir} 0755 root root -" ]
      ++ lib.concatLists (lib.mapAttrsToList (name: sb: [
        "d ${sb.dir} 0700 ${sb.owner} ${groupOf sb} -"
        "d ${stateOf sb} 0700 ${sb.owner} ${groupOf sb} -"
      ]) enabled);

    systemd.services =
      mapAttrs' (name: sb: nameValuePair (prepareUnit name) (prepareService name sb)) enabled
      // mapAttrs' (name: sb: nameValuePair (vmUnit name) (vmDropIn name sb)) enabled
      // mapAttrs' (name: sb: nameValuePair "microvm-virtiofsd@${name}" (virtiofsdDropIn name sb)) (filterAttrs (_: sb: sb.share == "virtiofs") enabled)
      // mapAttrs' (name: sb: nameValuePair (hostdUnit name) (hostdService name sb)) enabled;

    boot.extraModprobeConfig = lib.mkIf (lib.any (sb: sb.nested) (lib.attrValues enabled)) ''
      options kvm_intel nested=1
      options kvm_amd nested=1
    '';

    security.polkit.enable = lib.mkIf (enabled != { }) true;
    security.polkit.extraConfig = lib.concatStrings (lib.mapAttrsToList polkitRule enabled);
  }) ];
}

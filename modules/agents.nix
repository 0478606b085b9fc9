# The agents of the NixOS guest, the session environment and git identity the
# host writes at every start, and a home that survives a restart.
#
# The agents come from the one pinned manifest, go/internal/agents/manifest.json,
# which the Debian test guest reads too: the same npm tarballs, versions and
# integrity hashes, fetched with fetchurl, so the agents do not depend on the
# nixpkgs pin. How each agent is started (its no-permission-prompt flags, its
# tmux session) is the helper's job (go/internal/agents): the guest only has
# the programs. docs/agents.md describes both guests.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.keystone.guest;
  k = import ../lib { inherit lib; };
  manifest = k.agentManifest;

  # The guest paths of go/internal/guestconf (a Go test reads them here).
  confDir = "/run/keystone-agent";
  environmentFile = "${confDir}/environment";
  gitConfigFile = "${confDir}/gitconfig";
  keysMount = "/mnt/keystone";
  # The persistent home lives on the var volume (state/var.img): it survives
  # stop and start, and --fresh, which removes state/, discards it.
  homeStore = "/var/lib/keystone-agent/home";

  free = lib.subtractLists k.unfreeAgentNames k.agentNames;

  # One derivation per npm package: its package/ directory as lib/<id>, its
  # programs linked in bin/. Native programs are patched for NixOS: Claude
  # Code and Node are glibc programs (autoPatchelf gives them the store's
  # loader and libraries), Codex is static. Scripts (#!/usr/bin/env node)
  # get the pinned Node through patchShebangs.
  node = npmPackage "node" manifest.packages.node;
  npmPackage = id: p: pkgs.stdenv.mkDerivation {
    pname = "keystone-${id}";
    inherit (p) version;
    src = pkgs.fetchurl { inherit (p) url; hash = p.integrity; };
    sourceRoot = "package";
    nativeBuildInputs = lib.optional ((p.linkage or "") == "glibc") pkgs.autoPatchelfHook
      ++ lib.optional (id != "node" && (p.linkage or "") == "") node;
    buildInputs = lib.optional ((p.linkage or "") == "glibc") pkgs.stdenv.cc.cc.lib;
    dontConfigure = true;
    dontBuild = true;
    # Claude Code is a Bun executable: its code is in sections strip removes.
    dontStrip = true;
    installPhase = ''
      runHook preInstall
      mkdir -p $out/lib $out/bin
      cp -r . $out/lib/${id}
      ${lib.concatStrings (lib.mapAttrsToList (bin: rel: ''
        chmod +x $out/lib/${id}/${rel}
        ln -s $out/lib/${id}/${rel} $out/bin/${bin}
      '') p.bin)}
      runHook postInstall
    '';
    # what the checks compare with the manifest
    passthru.npm = { inherit (p) npm url integrity; license = p.license or ""; };
    meta = {
      description = "${p.npm} ${p.version} from the npm registry (keystone agent's pinned manifest)";
      # Not meta.license: nixpkgs would then refuse Claude Code unless the
      # whole configuration allowed unfree packages. The consent asked for is
      # keystone.guest.allowUnfreeAgents, one agent at a time (assertion below).
      platforms = [ "x86_64-linux" ];
    };
  };
  installed = lib.unique (cfg.agents ++ lib.optional (cfg.agent != null) cfg.agent);
  packageOf = name: npmPackage manifest.agents.${name}.package manifest.packages.${manifest.agents.${name}.package};

  # Copy the host's per-start files out of the keystone share before any
  # login (the share also holds the SSH host key, root-only after setup).
  sessionFilesScript = ''
    set -eu
    install -d -m 0755 ${confDir}
    for f in environment gitconfig; do
      if [ -f "${keysMount}/$f" ]; then
        install -m 0644 -o root -g root "${keysMount}/$f" "${confDir}/$f"
      fi
    done
  '';
  homeScript = ''
    set -eu
    install -d -m 0755 ${dirOf homeStore}
    [ -d ${homeStore} ] || install -d -m 0700 -o sandbox -g sandbox ${homeStore}
  '';
in
{
  options.keystone.guest = {
    agents = mkOption {
      type = types.listOf (types.enum k.agentNames);
      default = free ++ lib.filter (a: lib.elem a cfg.allowUnfreeAgents) k.unfreeAgentNames;
      defaultText = lib.literalExpression ''[ "codex" "gemini" ] ++ (agents of allowUnfreeAgents)'';
      example = [ "claude" "codex" ];
      description = ''
        Agents installed in the guest, at the versions of the pinned manifest
        (go/internal/agents/manifest.json), with Node for those that need it.
        `keystone agent start --agent NAME` runs one of them in a tmux session.
      '';
    };
    agent = mkOption {
      type = types.nullOr (types.enum k.agentNames);
      default = null;
      example = "claude";
      description = ''
        The agent of the sandbox's session (a declared sandbox's `agent`);
        it is installed whatever `agents` says.
      '';
    };
    allowUnfreeAgents = mkOption {
      type = types.listOf (types.enum k.unfreeAgentNames);
      default = [ ];
      example = [ "claude" ];
      description = ''
        Unfree agents whose licence you accept, so that they may be installed:
        "claude" (Claude Code, Anthropic's commercial terms). Nothing unfree is
        installed without it.
      '';
    };
    persistentHome = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Keep /home/sandbox (agent logins, shell history, caches) on the var
        volume (state/var.img), so it survives stop and start; `start --fresh`
        discards it with the rest of the sandbox's state.
      '';
    };
  };

  config = {
    assertions = map (a: {
      assertion = lib.elem a cfg.allowUnfreeAgents;
      message = "keystone.guest.agents contains \"${a}\", whose licence is unfree (${manifest.agents.${a}.package}): accept it with keystone.guest.allowUnfreeAgents = [ \"${a}\" ] (declared sandboxes: keystone.agent.allowUnfreeAgents), or remove \"${a}\" from the agents.";
    }) (lib.filter (a: lib.elem a k.unfreeAgentNames) installed);

    environment.systemPackages = [ pkgs.tmux node (npmPackage "npm" manifest.packages.npm) ] ++ map packageOf installed;

    # One environment for every session (go/internal/guestconf): login
    # shells here, exec and the agent's session through the helper.
    environment.extraInit = ''
      # shellcheck disable=SC1091
      [ -r ${environmentFile} ] && . ${environmentFile}
    '';
    # The identity and no-signing settings of the host's gitconfig file;
    # ~/.gitconfig is read later and may override them.
    programs.git = {
      enable = true;
      config.include.path = gitConfigFile;
    };

    systemd.services.keystone-session-files = {
      description = "Install the session environment and git identity written by keystone agent";
      wantedBy = [ "multi-user.target" ];
      before = [ "sshd.service" ];
      requiredBy = [ "sshd.service" ];
      unitConfig.RequiresMountsFor = [ keysMount ];
      path = [ pkgs.coreutils ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
      script = sessionFilesScript;
    };

    fileSystems = lib.mkIf cfg.persistentHome {
      "/home/sandbox" = {
        device = homeStore;
        fsType = "none";
        options = [ "bind" "x-systemd.requires=keystone-home.service" ];
        depends = [ "/var" ];
      };
    };
    systemd.services.keystone-home = lib.mkIf cfg.persistentHome {
      description = "Create the sandbox user's persistent home on the var volume";
      unitConfig = { DefaultDependencies = false; RequiresMountsFor = [ "/var" ]; };
      before = [ "home-sandbox.mount" ];
      path = [ pkgs.coreutils ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
      script = homeScript;
    };
    # the setup's uid change (guest.nix) must reach the persistent home
    systemd.services.keystone-guest-setup.unitConfig.RequiresMountsFor = lib.mkIf cfg.persistentHome [ "/home/sandbox" ];
  };
}

# Every keystone.agent.* option of the host module.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.keystone.agent;
  k = import ../lib { inherit lib; };
in
{
  options.keystone.agent = {
    enable = lib.mkEnableOption "the keystone helper (`keystone agent`) even when no sandbox is declared; declaring one implies it";
    package = lib.mkPackageOption pkgs "keystone" {
      extraDescription = "The flake's nixosModules.host sets it to the flake's packages.<system>.keystone; overlays.default provides pkgs.keystone.";
    };
    bridges = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_.-]{1,15}");
      default = [ ];
      example = [ "br0" ];
      description = ''
        Host bridges that imperative sandboxes may attach to
        (`keystone agent start --network bridge` uses br0). Installs the setuid
        qemu-bridge-helper and allows exactly these bridges, plus those of
        declared sandboxes, in /etc/qemu/bridge.conf. The bridge itself is
        yours to configure (networking.bridges).
      '';
    };
    stateDir = mkOption {
      type = types.strMatching "/.*";
      default = "/var/lib/keystone-agent";
      description = "Parent of the declared sandboxes' directories (<stateDir>/<name>).";
    };
    registryFile = mkOption {
      type = types.str;
      default = "/etc/keystone/agent/declared.json";
      readOnly = true;
      description = ''
        The declared-sandboxes registry this module writes, which the helper
        reads (override with KEYSTONE_AGENT_DECLARED). Format: docs/nixos.md.
      '';
    };
    allowUnfreeAgents = mkOption {
      type = types.listOf (types.enum k.unfreeAgentNames);
      default = [ ];
      example = [ "claude" ];
      description = ''
        Unfree agents whose licence you accept for every declared sandbox:
        "claude" (Claude Code, Anthropic's commercial terms). A sandbox with
        `agent = "claude"` needs it; nothing unfree is installed without it.
      '';
    };
    sandboxes = mkOption {
      type = types.attrsOf (types.submodule [ (import ./sandbox.nix { inherit (cfg) stateDir; }) ./sandbox-egress.nix ]);
      default = { };
      example = lib.literalExpression ''
        { my-app = { projectPath = "/home/alice/src/my-app"; owner = "alice"; agent = "codex"; }; }
      '';
      description = "Declared sandboxes: a microvm.nix guest each, with host units that prepare and run it and its host daemon.";
    };
  };
}

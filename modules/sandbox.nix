# Options of one declared sandbox, keystone.agent.sandboxes.<name>: the same
# knobs as `keystone agent start`. Defaults derive from <name>.
{ stateDir }:
{ name, config, lib, ... }:
let
  inherit (lib) mkOption types literalExpression;
  k = import ../lib { inherit lib; };
in
{
  options = {
    enable = lib.mkEnableOption "this sandbox" // { default = true; };
    name = mkOption {
      type = types.str;
      default = name;
      readOnly = true;
      description = "The sandbox name (the attribute name): guest hostname, systemd instance, state directory.";
    };
    projectPath = mkOption {
      type = types.strMatching "/.*";
      example = "/home/alice/projects/my-app";
      description = ''
        The project (a git repository) whose committed history is cloned into
        the sandbox's workspace. The project itself is never shared with the guest.
      '';
    };
    owner = mkOption {
      type = types.str;
      example = "alice";
      description = "Host user who owns the sandbox: the workspace, the keys, the VM process and `keystone agent` access.";
    };
    dir = mkOption {
      type = types.strMatching "/.*";
      default = "${stateDir}/${name}";
      defaultText = literalExpression ''"''${config.keystone.agent.stateDir}/''${name}"'';
      description = "Sandbox directory: workspace/ and state/, the same layout as an imperative sandbox.";
    };
    memory = mkOption { type = types.ints.positive; default = 8192; description = "Guest RAM in MiB (at least 2048)."; };
    vcpus = mkOption { type = types.ints.positive; default = 4; description = "Guest vCPUs."; };
    nested = lib.mkEnableOption "nested virtualisation in the guest (`--no-nested` turns it off)" // { default = true; };
    network = {
      mode = mkOption {
        type = types.enum [ "user" "tap" "macvtap" "bridge" ];
        default = "user";
        description = ''
          How the guest's own traffic leaves it. user: qemu's user networking
          (NAT, no inbound). tap: a host tap interface (network.interface),
          created for the owner; its addresses and routes are yours to
          configure. macvtap: on network.macvtap.link. bridge: attached to
          network.bridge. In every mode the helper reaches the guest's sshd on
          127.0.0.1:sshPort: in user mode through that NIC, otherwise through
          a second, restricted user-mode NIC that carries nothing else.
        '';
      };
      interface = mkOption {
        type = types.str;
        default = k.ifName name;
        defaultText = literalExpression ''"ks-''${name}"'';
        description = "Host interface id for tap and macvtap (at most 15 characters).";
      };
      mac = mkOption {
        type = types.strMatching "([0-9a-f]{2}:){5}[0-9a-f]{2}";
        default = k.macFor name;
        defaultText = "02: followed by the first five bytes of sha256(<name>)";
        description = "Guest MAC address.";
      };
      bridge = mkOption { type = types.nullOr types.str; default = null; example = "br0"; description = "Host bridge to attach to (mode = bridge)."; };
      macvtap = {
        link = mkOption { type = types.nullOr types.str; default = null; example = "enp1s0"; description = "Host link (mode = macvtap)."; };
        mode = mkOption { type = types.enum [ "private" "vepa" "bridge" "passthru" "source" ]; default = "bridge"; description = "macvtap mode."; };
      };
    };
    syncMode = mkOption {
      type = types.enum [ "manual" "auto-commit" "auto-idle" ];
      default = "manual";
      description = "manual: only `keystone agent sync`. auto-commit, auto-idle: the sandbox's host daemon unit (keystone-agent-hostd-<name>, `keystone agent hostd <name>` as the owner while the VM runs) syncs by itself.";
    };
    share = mkOption {
      type = types.enum [ "9p" "virtiofs" ];
      default = "9p";
      description = "How /workspace is shared. virtiofs runs microvm.nix's microvm-virtiofsd@<name> unit on the host.";
    };
    sshPort = mkOption {
      type = types.port;
      default = k.sshPortFor name;
      defaultText = "22300 + a value derived from <name> (below 23000)";
      description = "Host port on 127.0.0.1 forwarded to the guest's sshd, in every network mode.";
    };
    autostart = lib.mkEnableOption "the sandbox at boot (microvms.target)";
    agent = mkOption {
      type = types.nullOr (types.enum k.agentNames);
      default = null;
      example = "claude";
      description = ''
        The agent that runs in the sandbox's tmux session, as `keystone agent
        start --agent` would: `keystone agent attach <name>` joins it (and starts
        it when it is not running). Installed in the guest; "claude" is unfree
        and needs keystone.agent.allowUnfreeAgents = [ "claude" ].
      '';
    };
    agents = mkOption {
      type = types.nullOr (types.listOf (types.enum k.agentNames));
      default = null;
      example = [ "codex" "gemini" ];
      description = ''
        Agents installed in the guest (pinned in go/internal/agents/manifest.json);
        null: every free agent and the unfree ones of keystone.agent.allowUnfreeAgents.
      '';
    };
    authorizedKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      description = "Extra public keys allowed to log in as `sandbox` (the sandbox's own client key always is).";
    };
    extraModules = mkOption {
      type = types.listOf types.deferredModule;
      default = [ ];
      description = "Extra NixOS modules for this sandbox's guest.";
    };
  };
}

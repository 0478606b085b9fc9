{ lib, ... }:
{
  # Replace with your machine's hardware-configuration.nix.
  boot.loader.systemd-boot.enable = true;
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  users.users.alice = {
    isNormalUser = true;
    extraGroups = [ "wheel" "kvm" ];
  };

  # One declared sandbox: `sudo nixos-rebuild switch` creates its units;
  # start it with `systemctl start microvm@my-app` (alice may, without sudo),
  # then `keystone agent attach my-app` as alice.
  # Claude Code is unfree: accepting its licence is your decision, made here
  # (docs/agents.md); without it, evaluation stops with an assertion saying so.
  keystone.agent.allowUnfreeAgents = [ "claude" ];

  keystone.agent.sandboxes.my-app = {
    projectPath = "/home/alice/projects/my-app";
    owner = "alice";
    memory = 8192;
    vcpus = 4;
    agent = "claude"; # runs in the sandbox's tmux session; `keystone agent attach my-app` joins it
    syncMode = "manual";
    # sshPort defaults to a port derived from the name (22300-22999)
  };

  system.stateVersion = "25.05";
}

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
  # claude-code is unfree: accepting its license is your decision, made here.
  # Declared sandboxes are built from this host's nixpkgs, so this is where
  # it counts; without it, evaluation stops with an assertion saying so.
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "claude-code" ];

  keystone.agent.sandboxes.my-app = {
    projectPath = "/home/alice/projects/my-app";
    owner = "alice";
    memory = 8192;
    vcpus = 4;
    agents = [ "claude-code" ];
    syncMode = "manual";
    # sshPort defaults to a port derived from the name (22300-22999)
  };

  system.stateVersion = "25.05";
}

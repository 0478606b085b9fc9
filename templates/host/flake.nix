# A NixOS host with keystone agent and one declared sandbox.
#   nix flake init -t github:keystone-agent/keystone#host
# then adapt configuration.nix (your hardware, your user, your project) and
#   sudo nixos-rebuild switch --flake .#workstation
{
  description = "A NixOS host running keystone agent sandboxes";

  inputs = {
    keystone.url = "github:keystone-agent/keystone";
    # the same nixpkgs as keystone's guests: one store path for both
    nixpkgs.follows = "keystone/nixpkgs";
  };

  outputs = { nixpkgs, keystone, ... }: {
    nixosConfigurations.workstation = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [
        keystone.nixosModules.default
        ./configuration.nix
      ];
    };
  };
}

{
  description = "keystone agent: AI coding agents in isolated KVM microVM sandboxes";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    microvm = {
      url = "github:astro/microvm.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, microvm }:
    let
      inherit (nixpkgs) lib;
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      klib = import ./lib { inherit lib; };

      # The flake the helper pins into every state/flake.nix it renders:
      # this very source, by store path and hash, so no network is needed.
      keystoneFlake = "path:${self.outPath}" + lib.optionalString (self ? narHash) "?narHash=${self.narHash}";
      keystone = pkgs.callPackage ./lib/package.nix { inherit keystoneFlake; };

      # An imperative guest: microvm.nix's guest module with run-time
      # placeholders (lib/runner.nix); the caller brings nixosModules.guest, as
      # the rendered state/flake.nix does, so that it is visibly the same file.
      mkSandbox = { system ? "x86_64-linux", modules ? [ ] }:
        lib.nixosSystem {
          inherit system;
          modules = [
            microvm.nixosModules.microvm
            { keystone.guest.runtime = true; }
          ] ++ modules;
        };
      mkRunner = nixos: import ./lib/runner.nix {
        pkgs = nixos.pkgs or pkgs;
        inherit microvm nixos;
      };
    in
    {
      lib = klib // { inherit mkSandbox mkRunner; };

      nixosModules = {
        # the guest every sandbox runs; microvm.nix's guest module comes from the importer
        guest = { imports = [ ./modules/guest.nix ]; };
        # declared sandboxes: keystone.agent.sandboxes.<name>
        host = { pkgs, ... }: {
          imports = [ microvm.nixosModules.host ./modules ];
          keystone.agent.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.keystone;
        };
        default = self.nixosModules.host;
      };

      packages.${system} = {
        inherit keystone;
        default = keystone;
        # the runner `keystone agent start` builds for a default sandbox
        # (templates/sandbox/flake.nix renders the same thing)
        sandbox-runner = mkRunner (mkSandbox { modules = [ self.nixosModules.guest ]; });
      };

      apps.${system}.default = {
        type = "app";
        program = "${keystone}/bin/keystone";
      };

      templates = {
        host = {
          path = ./templates/host;
          description = "A NixOS host with keystone agent and one declared sandbox";
        };
        sandbox = {
          path = ./templates/sandbox;
          description = "The per-sandbox flake that `keystone agent start` renders (for reference)";
        };
        default = self.templates.host;
      };

      checks.${system} = import ./nix-checks { inherit pkgs nixpkgs microvm; } // {
        go-test = keystone.overrideAttrs (old: {
          pname = "keystone-go-test";
          doCheck = true;
          # every package, not only the built cmd/keystone
          subPackages = [ "..." ];
          # VM tiers need KVM and a test guest: -short keeps to unit and contract tests
          checkFlags = [ "-short" ];
          preCheck = "export HOME=$TMPDIR";
          nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [ pkgs.git pkgs.openssh ];
        });
      } // import ./nixos-tests { inherit pkgs self; };

      devShells.${system}.default = pkgs.mkShell {
        packages = [ pkgs.go pkgs.gopls pkgs.nix pkgs.qemu_kvm pkgs.openssh pkgs.git pkgs.shellcheck ];
      };

      formatter.${system} = pkgs.nixpkgs-fmt;
    };
}

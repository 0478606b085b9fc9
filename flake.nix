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
      klib = import ./lib { inherit lib; };
      # x86_64-linux only; the modules assert it (lib/default.nix `systems`)
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      # The flake the helper pins into every sandbox flake it renders: this
      # very source, by store path and hash, so no network is needed. Set in
      # the package's wrapper, not the Go build (lib/package.nix says why).
      keystoneFlake = "path:${self.outPath}" + lib.optionalString (self ? narHash) "?narHash=${self.narHash}";
      keystoneUnwrapped = p: p.callPackage ./lib/package.nix { };
      keystonePackage = p: p.callPackage ./lib/wrapper.nix { inherit keystoneFlake; keystone-unwrapped = keystoneUnwrapped p; };
      keystone = keystonePackage pkgs;
      keystone-unwrapped = keystoneUnwrapped pkgs;

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

      # pkgs.keystone, the helper pinned to this flake (keystone.agent.package's
      # default), and pkgs.keystone-unwrapped, its Go build
      overlays.default = final: _prev: {
        keystone-unwrapped = keystoneUnwrapped final;
        keystone = final.callPackage ./lib/wrapper.nix { inherit keystoneFlake; };
      };

      nixosModules = {
        # the guest every sandbox runs; microvm.nix's guest module comes from the importer
        guest = { imports = [ ./modules/guest.nix ]; };
        # declared sandboxes: keystone.agent.sandboxes.<name>
        host = { pkgs, ... }: {
          imports = [ microvm.nixosModules.host ./modules ];
          # the host's own pkgs: on another system the module's assertion,
          # not a missing attribute, tells why it stops
          keystone.agent.package = lib.mkDefault (keystonePackage pkgs);
        };
        default = self.nixosModules.host;
      };

      packages.${system} = {
        inherit keystone keystone-unwrapped;
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

      checks.${system} = import ./nix-checks { inherit pkgs nixpkgs microvm self; } // {
        go-test = keystone-unwrapped.overrideAttrs (old: {
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

      # the RFC 166 style of nixpkgs (`nixfmt` in nixpkgs after mid-2025)
      formatter.${system} = pkgs.nixfmt-rfc-style;
    };
}

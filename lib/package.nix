# The keystone helper (go/cmd/keystone), with the flake it was built from
# pinned into it: `keystone agent start` renders state/flake.nix against that
# flake, so an imperative guest runs the same guest.nix as a declared one and
# needs no network when the store already holds it.
{ lib, buildGoModule, makeWrapper, nix, git
, keystoneFlake ? "github:keystone-agent/keystone"
, version ? "0.1.0"
}:
buildGoModule {
  pname = "keystone";
  inherit version;
  src = lib.fileset.toSource { root = ../go; fileset = ../go; };
  # refresh with nix-checks/vendor-hash.sh (docs/nixos.md, "The Go package")
  vendorHash = "sha256-ShmMC/3L+wpgSFRE/aeTG6pBaVRjzN8+hFNAvPEUaak=";
  subPackages = [ "cmd/keystone" ];
  # go/go.mod names the Go it needs; with an older Go in nixpkgs the build
  # stops with Go's own "go.mod requires go >= …" instead of downloading one
  env = { CGO_ENABLED = 0; GOTOOLCHAIN = "local"; };
  ldflags = [
    "-s" "-w"
    "-X github.com/keystone-agent/keystone/internal/nixbuild.KeystoneFlake=${keystoneFlake}"
    # `keystone --version`: the release version, never a commit, so the stamp
    # alone does not make every change of the repository a new build
    "-X github.com/keystone-agent/keystone/internal/cli.Version=${version}"
  ];
  nativeBuildInputs = [ makeWrapper ];
  # The programs the helper runs: nix (`nix build` of state/flake.nix) and the
  # trusted git that fast-forwards the host repository on sync. PATH is a
  # suffix, so that the system's own nix (and its settings) wins; the git
  # sync uses is pinned (KEYSTONE_AGENT_GIT), a user's setting still wins.
  postInstall = ''
    wrapProgram $out/bin/keystone --suffix PATH : ${lib.makeBinPath [ nix git ]} \
      --set-default KEYSTONE_AGENT_GIT ${git}/bin/git
  '';
  # the VM tiers need KVM and a test guest; checks.go-test runs `go test -short`
  doCheck = false;
  meta = {
    description = "Run AI coding agents in isolated KVM microVM sandboxes";
    mainProgram = "keystone";
    platforms = lib.platforms.linux;
  };
}

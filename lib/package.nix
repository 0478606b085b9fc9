# The keystone helper (go/cmd/keystone): the Go build of go/ alone, so that it
# changes only with go/. lib/wrapper.nix makes the package users install.
{ lib, stdenv, buildGoModule, installShellFiles, version ? "0.1.0" }:
buildGoModule {
  pname = "keystone-unwrapped";
  inherit version;
  src = lib.fileset.toSource { root = ../go; fileset = ../go; };
  # refresh with nix-checks/vendor-hash.sh (docs/nixos.md, "The Go package")
  vendorHash = "sha256-SNulK32FIR+IZt6irpjQAdOzgXEaswEaSoaEZHfhyxw=";
  subPackages = [ "cmd/keystone" ];
  # go/go.mod names the Go it needs; with an older Go in nixpkgs the build
  # stops with Go's own "go.mod requires go >= …" instead of downloading one
  env = { CGO_ENABLED = 0; GOTOOLCHAIN = "local"; };
  ldflags = [
    "-s" "-w"
    # `keystone --version`: the release version, never a commit, so the stamp
    # alone does not make every change of the repository a new build
    "-X github.com/keystone-agent/keystone/internal/cli.Version=${version}"
  ];
  # shell completion, written by the program itself (`keystone completion SHELL`)
  nativeBuildInputs = [ installShellFiles ];
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd keystone \
      --bash <($out/bin/keystone completion bash) \
      --zsh <($out/bin/keystone completion zsh) \
      --fish <($out/bin/keystone completion fish)
  '';
  # the VM tiers need KVM and a test guest; checks.go-test runs `go test -short`
  doCheck = false;
  meta = {
    description = "Run AI coding agents in isolated KVM microVM sandboxes (the Go helper, unwrapped)";
    mainProgram = "keystone";
    # the guests and runners are x86_64-linux only (lib/default.nix `systems`)
    platforms = [ "x86_64-linux" ];
  };
}

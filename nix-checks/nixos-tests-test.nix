# The NixOS tests' host nodes evaluate against the real host module (their
# Python test scripts only run on a KVM host with nixpkgs: `nix flake check`).
{ lib, pkgs, evalHost, ... }:
let
  fakeSource = name: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  self = fakeSource "source" // {
    nixosModules.host = { imports = [ ../modules ]; keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { }; };
    packages.x86_64-linux.sandbox-runner = pkgs.mkFake "keystone-runner-user" { };
    inputs = {
      nixpkgs = fakeSource "nixpkgs";
      microvm = fakeSource "microvm" // {
        inputs = {
          flake-utils = fakeSource "flake-utils" // { inputs.systems = fakeSource "systems"; };
          spectrum = fakeSource "spectrum";
        };
      };
    };
  };
  declared = import ../nixos-tests/declared.nix { inherit self; };
  imperative = import ../nixos-tests/imperative.nix { inherit self; };
  hostOf = t: evalHost [ t.nodes.host ];
  has = lib.hasInfix;
in
{
  test_declared_node = { expr = (hostOf declared).failedAssertions; expected = [ ]; };
  test_declared_node_evaluates = { expr = (hostOf declared).toplevel; };
  test_declared_sandbox = { expr = (hostOf declared).config.microvm.vms ? demo; expected = true; };
  test_imperative_node = { expr = (hostOf imperative).failedAssertions; expected = [ ]; };
  test_imperative_node_evaluates = { expr = (hostOf imperative).toplevel; };
  test_imperative_helper_installed = {
    expr = lib.elem "keystone-0.1.0" (map (p: p.name) (hostOf imperative).config.environment.systemPackages);
    expected = true;
  };
  test_nested_kvm = { expr = (hostOf declared).config.virtualisation.qemu.options; expected = [ "-cpu" "kvm64,+svm,+vmx" ]; };
  test_scripts_cover_the_issue = {
    expr = map (s: has s (declared.testScript + imperative.testScript)) [
      ''subtest("a declared sandbox boots")''
      ''subtest("the helper execs in it")''
      ''subtest("a commit made inside syncs to the host repo")''
      ''subtest("the guest cannot read the host's ~/.ssh or /root")''
      ''subtest("stop leaves no process behind")''
      ''subtest("an imperative start works")''
      "keystone agent start --no-attach"
    ];
    expected = [ true true true true true true true ];
  };
}

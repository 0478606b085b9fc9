# The NixOS tests' host nodes evaluate against the real host module (their
# Python test scripts only run on a KVM host with nixpkgs: `nix flake check`).
{ lib, pkgs, evalHost, ... }:
let
  fakeSource = name: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  self = fakeSource "source" // {
    nixosModules.host = { imports = [ ../modules ]; keystone.agent.package = pkgs.mkFake "keystone-0.1.0" { }; };
    nixosModules.guest = { };
    lib = { mkSandbox = _: { }; mkRunner = _: pkgs.mkFake "keystone-runner-bridge" { }; };
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
  test_declared_sized_to_fit = {
    # two sandboxes of 2 GiB each (2050 MiB to qemu) in a 6 GiB, 2-core test VM, one vcpu each
    expr = let h = hostOf declared; in [ h.config.virtualisation.memorySize h.config.virtualisation.cores
      (lib.mapAttrs (_: g: [ g.config.microvm.mem g.config.microvm.vcpu ]) h.guests) ];
    expected = [ 6144 2 { demo = [ 2050 1 ]; lan = [ 2050 1 ]; } ];
  };
  test_declared_tap_not_nested = {
    expr = let h = hostOf declared; in [ h.config.keystone.agent.sandboxes.lan.network.mode h.config.keystone.agent.sandboxes.lan.nested (has "-vmx,-svm" h.hypervisor.lan.command) ];
    expected = [ "tap" false true ];
  };
  test_imperative_bridge = {
    expr = let c = (hostOf imperative).config; in [ c.keystone.agent.bridges c.environment.etc."qemu/bridge.conf".text (c.security.wrappers ? qemu-bridge-helper) ];
    expected = [ [ "br0" ] "allow br0\n" true ];
  };
  test_imperative_sized_to_fit = { expr = has "--memory 2048 --vcpus 1 --no-attach" imperative.testScript; expected = true; };
  test_imperative_node = { expr = (hostOf imperative).failedAssertions; expected = [ ]; };
  test_imperative_node_evaluates = { expr = (hostOf imperative).toplevel; };
  test_imperative_helper_installed = {
    expr = lib.elem "keystone-0.1.0" (map (p: p.name) (hostOf imperative).config.environment.systemPackages);
    expected = true;
  };
  test_nested_kvm = { expr = (hostOf declared).config.virtualisation.qemu.options; expected = [ "-cpu" "kvm64,+svm,+vmx" ]; };
  test_scripts_cover_the_issue = {
    expr = lib.filter (s: !has s (declared.testScript + imperative.testScript)) [
      ''subtest("a declared sandbox boots")''
      ''subtest("the helper execs in it")''
      ''subtest("a plain git commit made inside syncs to the host repo")''
      ''subtest("the guest cannot read the host's ~/.ssh or /root")''
      ''subtest("stop leaves no process behind")''
      ''subtest("an imperative start works")''
      ''subtest("memory 2048 is given to qemu as 2050")''
      ''subtest("a rebuild does not restart a running sandbox")''
      ''subtest("a restart of the same sandbox boots the new guest")''
      ''subtest("a tap sandbox without nested virtualisation")''
      ''subtest("the build source is the flake alone: no key or disk reaches the store")''
      ''subtest("the same sandbox restarts after a stop")''
      ''subtest("and after SIGKILL, with qmp.sock left behind")''
      ''subtest("start --network bridge: on br0, reached through the control NIC")''
      "git commit -qam from-the-guest'"
      "if nested_kvm(host):"
    ];
    expected = [ ];
  };
}

# NixOS VM tests (pkgs.testers.runNixOSTest), collected for the flake's checks.
# They need a real KVM host: the test VM nests the sandbox VM
# (`-cpu kvm64,+svm,+vmx`, as microvm.nix's checks/vm.nix does).
{ pkgs, self }:
{
  nixos-declared = pkgs.testers.runNixOSTest (import ./declared.nix { inherit self; });
  nixos-imperative = pkgs.testers.runNixOSTest (import ./imperative.nix { inherit self; });
  nixos-agents = pkgs.testers.runNixOSTest (import ./agents.nix { inherit self; });
}

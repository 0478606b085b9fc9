# The test host: a NixOS VM with nested KVM, the keystone host module, a user
# `alice` with a project and with secrets the sandbox must never see.
{ self }:
{ lib, pkgs, ... }:
{
  imports = [ self.nixosModules.host ];
  virtualisation = {
    cores = 2;
    memorySize = 6144;
    diskSize = 8192;
    qemu.options = [ "-cpu" "kvm64,+svm,+vmx" ];
  };
  boot.kernelModules = [ "kvm-intel" "kvm-amd" ];
  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  users.users.alice = { isNormalUser = true; uid = 1000; extraGroups = [ "kvm" ]; };
  environment.systemPackages = [ pkgs.git pkgs.procps ];
}

# checks.<system>.{module-eval,shellcheck}: the evaluation tests of nix-checks/*-test.nix
# under real NixOS (nixpkgs' nixosSystem, microvm.nix's modules), with the
# same scope shape as the offline harness (../shared/tools/nixeval), so one
# test file serves both. Differences: packages are real (pkgs.mkFake makes a
# writeText), and an expectError case passes when evaluation fails at all
# (builtins.tryEval cannot see the message; the offline run checks it).
{ pkgs, nixpkgs, microvm, self, system ? pkgs.stdenv.hostPlatform.system }:
let
  inherit (nixpkgs) lib;
  testPkgs = pkgs // { mkFake = name: _: pkgs.writeText name ""; };
  # defaults only: templates/host's configuration.nix, evaluated with it,
  # brings its own root filesystem and stateVersion
  baseHost = {
    boot.loader.grub.enable = lib.mkDefault false;
    fileSystems."/" = lib.mkDefault { device = "none"; fsType = "tmpfs"; };
    system.stateVersion = lib.mkDefault "25.05";
  };
  failedOf = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  hypervisorFor = g: import "${microvm}/lib/runners/qemu.nix" {
    pkgs = g.pkgs or pkgs;
    microvmConfig = g.config.microvm // { inherit (g.config.networking) hostName; hypervisor = "qemu"; };
    macvtapFds = { };
  };
  evalHost = modules:
    let
      sys = lib.nixosSystem { inherit system; modules = [ microvm.nixosModules.host ../modules baseHost ] ++ lib.toList modules; };
      guests = lib.mapAttrs (_: v: v.config) (lib.filterAttrs (_: v: v.config != null) sys.config.microvm.vms);
    in
    sys // {
      inherit guests;
      hypervisor = lib.mapAttrs (_: hypervisorFor) guests;
      failedAssertions = failedOf sys.config
        ++ lib.concatLists (lib.mapAttrsToList (n: g: map (m: "guest ${n}: ${m}") (failedOf g.config)) guests);
      toplevel = sys.config.system.build.toplevel;
    };
  evalGuest = { modules }: lib.nixosSystem { inherit system; inherit modules; };
  scope = { inherit lib evalHost evalGuest; pkgs = testPkgs; microvmSrc = microvm.outPath; host = evalHost [ ]; };

  # force a value as a build would: derivations by their .drv, the rest deeply
  force = v:
    if lib.isDerivation v then builtins.seq v.drvPath true
    else if builtins.isAttrs v then lib.all force (lib.attrValues v)
    else if builtins.isList v then lib.all force v
    else builtins.seq v true;
  run = file: lib.mapAttrsToList (name: c:
    let r = builtins.tryEval (let x = c.expr; in builtins.seq (force x) x); in
    if c ? expectError then { inherit name; ok = !r.success; why = "expected an evaluation error"; }
    else if !r.success then { inherit name; ok = false; why = "evaluation failed"; }
    else if c ? expected then { inherit name; ok = r.value == c.expected; why = "got ${builtins.toJSON r.value}"; }
    else { inherit name; ok = true; why = ""; })
    (lib.filterAttrs (n: _: lib.hasPrefix "test" n) (import file scope));
  results = run ./host-test.nix ++ run ./guest-test.nix;
  failures = lib.filter (r: !r.ok) results;

  # templates/host as `nix flake init -t` gives it: its own flake.nix's
  # outputs, called with this nixpkgs and this flake as its inputs, as
  # `nixos-rebuild --flake .#workstation` evaluates them. Evaluated to the
  # toplevel's .drv (nixpkgs' unfree check throws there), not built. Its pkgs
  # (which declared guests share) must allow no unfree package wholesale:
  # keystone.agent.allowUnfreeAgents is the one consent.
  templateHost = ((import ../templates/host/flake.nix).outputs { inherit nixpkgs; keystone = self; }).nixosConfigurations.workstation;
  unfreeWholesale = c: (c.allowUnfree or false) || c ? allowUnfreePredicate;
in
{
  template-host =
    assert lib.assertMsg (!unfreeWholesale (templateHost.config.nixpkgs.config or { }))
      "templates/host: its nixpkgs allows unfree packages wholesale; keystone.agent.allowUnfreeAgents is the consent";
    pkgs.runCommand "keystone-template-host" { } ''
      echo ${builtins.unsafeDiscardStringContext templateHost.config.system.build.toplevel.drvPath} > $out
    '';

  module-eval = pkgs.runCommand "keystone-module-eval" { } (
    if failures == [ ] then ''
      echo "${toString (lib.length results)} module evaluation tests passed" > $out
    '' else throw "module evaluation tests failed:\n${lib.concatMapStrings (f: "- ${f.name}: ${f.why}\n") failures}"
  );

  # the shell the modules generate (nix-checks/scripts.nix), like microvm.nix's checks/shellcheck.nix
  shellcheck = pkgs.runCommand "keystone-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } (
    lib.concatStrings (lib.mapAttrsToList (name: text: ''
      cat > ${name}.sh <<'KEYSTONE_EOF'
      ${if lib.hasPrefix "#!" text then "" else "#!/usr/bin/env bash\n"}${text}
      KEYSTONE_EOF
      shellcheck -s bash ${name}.sh
    '') (import ./scripts.nix scope)) + "touch $out\n"
  );
}

# An imperative sandbox on the host VM: `keystone agent start --no-attach`
# renders state/flake.nix against the flake the helper was built from and
# builds the runner offline (everything it needs is already in the store).
{ self }:
let
  system = "x86_64-linux";
  inputs = self.inputs;
  mv = inputs.microvm;
in
{
  name = "keystone-agent-imperative";

  nodes.host = { ... }: {
    imports = [ (import ./common.nix { inherit self; }) ];
    keystone.agent.enable = true;
    # no network in the test: the flake sources and the runner's closure are there already
    virtualisation.additionalPaths = [
      self.outPath
      inputs.nixpkgs.outPath
      mv.outPath
      mv.inputs.flake-utils.outPath
      mv.inputs.flake-utils.inputs.systems.outPath
      mv.inputs.spectrum.outPath
      self.packages.${system}.sandbox-runner
    ];
    nix.settings.substituters = [ ];
  };

  testScript = builtins.readFile ./lib.py + ''
    host.wait_for_unit("multi-user.target")
    plant_secrets_and_project(host)

    with subtest("an imperative start works"):
        host.succeed(as_alice("cd ~/project && keystone agent start --no-attach >&2"), timeout=900)
        state = "/home/alice/.config/keystone/agent/sandboxes/project/state"
        host.succeed(f"grep -q 'nixosModules.guest' {state}/flake.nix")
        host.succeed(f"test -x {state}/runner/bin/microvm-run")
        host.succeed(f"test -e {state}/microvm.pid")
        assert host.succeed(as_alice("keystone agent exec project -- hostname")).strip() == "project"
        assert host.succeed(as_alice("keystone agent exec project -- cat /workspace/README")).strip() == "hello"

    with subtest("a second sandbox starts without a new build"):
        host.succeed(as_alice("cp -r ~/project ~/other"))
        host.succeed(as_alice("cd ~/other && keystone agent start --no-attach >&2"), timeout=300)
        r1 = host.succeed(f"readlink -f {state}/runner").strip()
        r2 = host.succeed("readlink -f /home/alice/.config/keystone/agent/sandboxes/other/state/runner").strip()
        assert r1 == r2, f"{r1} != {r2}"

    with subtest("the guest cannot read the host's ~/.ssh or /root"):
        assert_isolated(host, "project")

    with subtest("stop leaves no process behind"):
        host.succeed(as_alice("keystone agent stop project"))
        host.succeed(as_alice("keystone agent stop other"))
        assert_no_process(host, "project")
        assert_no_process(host, "other")
  '';
}

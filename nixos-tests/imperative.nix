# Imperative sandboxes on the host VM: `keystone agent start --no-attach`
# renders a flake against the flake the helper was built from and builds the
# runner offline (everything it needs is already in the store), restarts the
# same sandbox, after a stop and after SIGKILL, and runs one on a bridge.
{ self }:
let
  system = "x86_64-linux";
  inputs = self.inputs;
  mv = inputs.microvm;
  # the runner `start --network bridge` builds: in the store beforehand
  bridgeRunner = self.lib.mkRunner (self.lib.mkSandbox { modules = [ self.nixosModules.guest { keystone.guest.network.mode = "bridge"; } ]; });
  small = "--memory 2048 --vcpus 1 --no-attach";
in
{
  name = "keystone-agent-imperative";

  nodes.host = { ... }: {
    imports = [ (import ./common.nix { inherit self; }) ];
    keystone.agent.enable = true;
    # `start --network bridge` attaches to br0 through the setuid helper
    keystone.agent.bridges = [ "br0" ];
    networking.bridges.br0.interfaces = [ ];
    networking.interfaces.br0.ipv4.addresses = [ { address = "192.168.84.1"; prefixLength = 24; } ];
    # no network in the test: the flake sources and the runners' closures are there already
    virtualisation.additionalPaths = [
      self.outPath
      inputs.nixpkgs.outPath
      mv.outPath
      mv.inputs.flake-utils.outPath
      mv.inputs.flake-utils.inputs.systems.outPath
      mv.inputs.spectrum.outPath
      self.packages.${system}.sandbox-runner
      bridgeRunner
    ];
    nix.settings.substituters = [ ];
  };

  testScript = builtins.readFile ./lib.py + ''
    host.wait_for_unit("multi-user.target")
    plant_secrets_and_project(host)
    state = "/home/alice/.config/keystone/agent/sandboxes/project/state"

    def run():
        with subtest("an imperative start works"):
            host.succeed(as_alice("cd ~/project && keystone agent start ${small} >&2"), timeout=900)
            host.succeed(f"grep -q 'nixosModules.guest' {state}/flake.nix")
            host.succeed(f"test -x {state}/runner/bin/microvm-run")
            host.succeed(f"test -e {state}/microvm.pid")
            assert host.succeed(as_alice("keystone agent exec project -- hostname")).strip() == "project"
            assert host.succeed(as_alice("keystone agent exec project -- cat /workspace/README")).strip() == "hello"

        with subtest("the build source is the flake alone: no key or disk reaches the store"):
            assert host.succeed(f"ls -A {state}/flake").split() == ["flake.lock", "flake.nix"]
            host.fail("find /nix/store -maxdepth 2 \\( -name client_ed25519 -o -name ssh_host_ed25519_key -o -name var.img -o -name qmp.sock \\) | grep .")

        with subtest("the same sandbox restarts after a stop"):
            host.succeed(as_alice("keystone agent stop project"))
            host.succeed(as_alice("cd ~/project && keystone agent start ${small} >&2"), timeout=300)
            host.succeed(as_alice("keystone agent exec project -- true"))

        with subtest("and after SIGKILL, with qmp.sock left behind"):
            host.succeed(f"kill -9 -- -$(cat {state}/microvm.pid)")
            host.wait_until_fails("pgrep -f 'microvm[@]project'", timeout=60)
            host.succeed(f"test -S {state}/qmp.sock")
            host.succeed(as_alice("cd ~/project && keystone agent start ${small} >&2"), timeout=300)
            host.succeed(as_alice("keystone agent exec project -- true"))

        with subtest("a second sandbox starts without a new build"):
            host.succeed(as_alice("cp -r ~/project ~/other"))
            host.succeed(as_alice("cd ~/other && keystone agent start ${small} >&2"), timeout=300)
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

        with subtest("start --network bridge: on br0, reached through the control NIC"):
            host.succeed("grep -x 'allow br0' /etc/qemu/bridge.conf")
            host.succeed(as_alice("cp -r ~/project ~/lan"))
            host.succeed(as_alice("cd ~/lan && keystone agent start --network bridge ${small} >&2"), timeout=300)
            host.succeed("ip -o link show master br0 | grep -q tap")
            host.succeed(as_alice("keystone agent exec lan -- true"))
            host.succeed(as_alice("keystone agent stop lan"))
            assert_no_process(host, "lan")

    if nested_kvm(host):
        run()
  '';
}

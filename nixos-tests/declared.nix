# Declared sandboxes: nixos-rebuild's units prepare them, run them as their
# owner, a rebuild leaves a running one alone, and `keystone agent` works on
# them unchanged, in user and tap mode.
{ self }:
let
  lanMac = "02:00:00:00:00:83";
in
{
  name = "keystone-agent-declared";

  nodes.host = { lib, ... }: {
    imports = [ (import ./common.nix { inherit self; }) ];
    keystone.agent.sandboxes = {
      # 2048 MiB: qemu hangs with exactly that; the module gives it 2050
      demo = {
        projectPath = "/home/alice/project";
        owner = "alice";
        memory = 2048;
        vcpus = 1;
        sshPort = 2300;
      };
      # not `user`: a tap made for alice, reached through the control NIC;
      # and no nested virtualisation
      lan = {
        projectPath = "/home/alice/project";
        owner = "alice";
        memory = 2048;
        vcpus = 1;
        sshPort = 2301;
        nested = false;
        network = { mode = "tap"; mac = lanMac; };
        extraModules = [ {
          systemd.network.networks."20-lan" = { matchConfig.MACAddress = lanMac; address = [ "192.168.83.2/24" ]; };
        } ];
      };
    };
    # the same host with a changed guest: switching to it is a rebuild
    specialisation.rebuilt.configuration.keystone.agent.sandboxes.demo.vcpus = lib.mkForce 2;
  };

  testScript = builtins.readFile ./lib.py + ''
    host.wait_for_unit("multi-user.target")
    plant_secrets_and_project(host)

    def run():
        with subtest("the registry lists the declared sandboxes"):
            host.succeed("grep -q '\"demo\"' /etc/keystone/agent/declared.json")
            host.succeed("grep -q '\"lan\"' /etc/keystone/agent/declared.json")

        with subtest("a declared sandbox boots"):
            host.succeed(as_alice("systemctl start microvm@demo.service"))  # polkit: the owner may
            host.wait_for_unit("microvm@demo.service")
            host.succeed("test -d /var/lib/keystone-agent/demo/workspace/.git")
            host.succeed("stat -c %U /var/lib/keystone-agent/demo/state/client_ed25519 | grep -x alice")
            host.succeed("stat -c %a /var/lib/keystone-agent/demo/state/client_ed25519 | grep -x 600")
            host.succeed("pgrep -u alice qemu-system")  # the VM runs as its owner
            host.fail("pgrep -u root qemu-system")
            host.succeed("ss -tlnH 'sport = :2300' | grep -q '127.0.0.1:2300'")
            host.fail("ss -tlnH 'sport = :2300' | grep -v '127.0.0.1:2300'")
            host.wait_until_succeeds(as_alice("keystone agent exec demo -- true"), timeout=300)

        with subtest("memory 2048 is given to qemu as 2050"):
            assert " -m 2050 " in qemu_args(host, "demo"), qemu_args(host, "demo")

        with subtest("the helper execs in it"):
            out = host.succeed(as_alice("keystone agent exec demo -- cat /workspace/README"))
            assert out.strip() == "hello", out
            assert host.succeed(as_alice("keystone agent exec demo -- hostname")).strip() == "demo"
            assert host.succeed(as_alice("keystone agent exec demo -- id -u")).strip() == "1000"
            host.succeed(as_alice("keystone agent list | grep -w demo"))
            host.succeed(as_alice("keystone agent status demo --json | grep -q demo"))

        with subtest("the host daemon holds the SSH connection exec uses, for the owner only"):
            host.wait_until_succeeds("journalctl -u keystone-agent-hostd-demo.service | grep -q 'ssh connection ready'", timeout=300)
            host.succeed("stat -c '%U %a %F' /var/lib/keystone-agent/demo/state/ssh.sock | grep -x 'alice 600 socket'")
            host.succeed("journalctl -u microvm@demo.service | grep -q 'keystone-agent: sshd is listening'")
            assert host.succeed(as_alice("keystone agent exec demo -- sh -c 'echo held; exit 0'")).strip() == "held"

        with subtest("a plain git commit made inside syncs to the host repo"):
            # no -c user.name: the guest has an identity of its own
            host.succeed(as_alice("keystone agent exec demo -- sh -c 'cd /workspace && echo change >> README && git commit -qam from-the-guest'"))
            host.succeed(as_alice("keystone agent sync demo"))
            assert host.succeed(as_alice("git -C ~/project log -1 --format=%s")).strip() == "from-the-guest"
            assert host.succeed(as_alice("git -C ~/project log -1 --format=%an")).strip() == "keystone agent"
            host.succeed(as_alice("grep -x change ~/project/README"))

        with subtest("the guest cannot read the host's ~/.ssh or /root"):
            assert_isolated(host, "demo")

        with subtest("a rebuild does not restart a running sandbox"):
            pid = host.succeed("systemctl show -p MainPID --value microvm@demo.service").strip()
            host.succeed("/run/current-system/specialisation/rebuilt/bin/switch-to-configuration test")
            assert host.succeed("systemctl show -p MainPID --value microvm@demo.service").strip() == pid
            host.succeed(as_alice("keystone agent exec demo -- true"))
            assert host.succeed(as_alice("keystone agent exec demo -- nproc")).strip() == "1"

        with subtest("a restart of the same sandbox boots the new guest"):
            host.succeed(as_alice("systemctl restart microvm@demo.service"))
            host.wait_until_succeeds(as_alice("keystone agent exec demo -- true"), timeout=300)
            assert host.succeed(as_alice("keystone agent exec demo -- nproc")).strip() == "2"
            assert host.succeed(as_alice("keystone agent exec demo -- cat /workspace/README")).strip().endswith("change")

        with subtest("stop leaves no process behind"):
            host.succeed(as_alice("systemctl stop microvm@demo.service"))
            assert_no_process(host, "demo")
            host.fail("test -e /var/lib/keystone-agent/demo/state/booted")
            # the workspace and keys survive for the next start
            host.succeed("test -e /var/lib/keystone-agent/demo/state/guest/ssh_host_ed25519_key")

        with subtest("a tap sandbox without nested virtualisation"):
            host.succeed(as_alice("systemctl start microvm@lan.service"))
            host.wait_for_unit("microvm@lan.service")
            # the tap is alice's: qemu, running as alice, could open it
            host.succeed("ip -d tuntap show | grep -E '^ks-lan: tap .*user 1000'")
            host.wait_until_succeeds(as_alice("keystone agent exec lan -- true"), timeout=300)
            # the control NIC carries SSH; the guest's own traffic goes through the tap
            host.succeed("ip addr add 192.168.83.1/24 dev ks-lan")
            host.wait_until_succeeds(as_alice("keystone agent exec lan -- ping -c1 -W2 192.168.83.1"), timeout=60)
            host.succeed("ping -c1 -W2 192.168.83.2")
            # 10.0.2.2:2301 is the host's own forward back to this sshd: through
            # a restricted NIC no banner comes back
            host.fail(as_alice("keystone agent exec lan -- sh -c 'curl -s -m 3 telnet://10.0.2.2:2301 </dev/null | grep -q SSH'"))
            host.fail(as_alice("keystone agent exec lan -- grep -qwE 'vmx|svm' /proc/cpuinfo"))
            host.fail(as_alice("keystone agent exec lan -- test -e /dev/kvm"))
            host.succeed(as_alice("systemctl stop microvm@lan.service"))
            assert_no_process(host, "lan")

    if nested_kvm(host):
        run()
  '';
}

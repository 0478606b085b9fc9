# A declared sandbox: nixos-rebuild's units prepare it, run it as its owner,
# and `keystone agent` works on it unchanged.
{ self }:
{
  name = "keystone-agent-declared";

  nodes.host = { ... }: {
    imports = [ (import ./common.nix { inherit self; }) ];
    keystone.agent.sandboxes.demo = {
      projectPath = "/home/alice/project";
      owner = "alice";
      memory = 2560;
      vcpus = 1;
      sshPort = 2300;
    };
  };

  testScript = builtins.readFile ./lib.py + ''
    host.wait_for_unit("multi-user.target")
    plant_secrets_and_project(host)

    with subtest("the registry lists the declared sandbox"):
        host.succeed("grep -q '\"demo\"' /etc/keystone/agent/declared.json")

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

    with subtest("the helper execs in it"):
        out = host.succeed(as_alice("keystone agent exec demo -- cat /workspace/README"))
        assert out.strip() == "hello", out
        assert host.succeed(as_alice("keystone agent exec demo -- hostname")).strip() == "demo"
        assert host.succeed(as_alice("keystone agent exec demo -- id -u")).strip() == "1000"
        host.succeed(as_alice("keystone agent list | grep -w demo"))
        host.succeed(as_alice("keystone agent status demo --json | grep -q demo"))

    with subtest("a commit made inside syncs to the host repo"):
        host.succeed(as_alice("keystone agent exec demo -- sh -c 'cd /workspace && echo change >> README && git -c user.email=agent@sandbox -c user.name=Agent commit -qam from-the-guest'"))
        host.succeed(as_alice("keystone agent sync demo"))
        assert host.succeed(as_alice("git -C ~/project log -1 --format=%s")).strip() == "from-the-guest"
        host.succeed(as_alice("grep -x change ~/project/README"))

    with subtest("the guest cannot read the host's ~/.ssh or /root"):
        assert_isolated(host, "demo")

    with subtest("stop leaves no process behind"):
        host.succeed(as_alice("systemctl stop microvm@demo.service"))
        assert_no_process(host, "demo")
        host.fail("test -e /var/lib/keystone-agent/demo/state/booted")
        # the workspace and keys survive for the next start
        host.succeed("test -e /var/lib/keystone-agent/demo/state/guest/ssh_host_ed25519_key")
  '';
}

# Shared steps of the keystone NixOS tests (prepended to each testScript).
import shlex

def as_alice(cmd):
    return "sudo -u alice -H -- sh -c " + shlex.quote(cmd)

def nested_kvm(host):
    # The sandboxes need KVM inside the test VM: without nested
    # virtualisation on the machine running the test (or under TCG) there is
    # no /dev/kvm, and the test is skipped rather than failed.
    if host.execute("test -c /dev/kvm && grep -qwE 'vmx|svm' /proc/cpuinfo")[0] == 0:
        return True
    host.log("SKIPPED: no nested KVM in the test VM (enable nested virtualisation on the host running the test)")
    return False

def plant_secrets_and_project(host):
    # what the guest must never see
    host.succeed(as_alice("install -d -m 700 ~/.ssh && echo alice-ssh-secret > ~/.ssh/id_ed25519 && chmod 600 ~/.ssh/id_ed25519"))
    host.succeed("echo root-secret > /root/secret && chmod 600 /root/secret")
    # the project: a git repository with one commit
    host.succeed(as_alice(
        "mkdir -p ~/project && cd ~/project && git init -q -b main"
        " && git config user.email alice@host && git config user.name Alice"
        " && echo hello > README && git add README && git commit -qm init"))

def assert_isolated(host, name):
    # the guest's 9p/virtiofs mounts are exactly the clone and the keys
    tags = host.succeed(as_alice(f"keystone agent exec {name} -- sh -c \"awk '\\$3 == \\\"9p\\\" || \\$3 == \\\"virtiofs\\\" {{print \\$1}}' /proc/mounts | sort -u\"")).split()
    assert set(tags) == {"workspace", "keystone"}, f"unexpected shares {tags}"
    for path in ["/workspace", "/mnt/keystone", "/home", "/root", "/etc", "/var", "/tmp"]:
        host.fail(as_alice(f"keystone agent exec {name} -- sudo grep -rqs -e alice-ssh-secret -e root-secret {path}"))
    host.fail(as_alice(f"keystone agent exec {name} -- sudo ls /mnt/keystone/client_ed25519"))
    # the keys share is read-only even for the guest's root
    host.fail(as_alice(f"keystone agent exec {name} -- sudo touch /mnt/keystone/x"))

def assert_no_process(host, name):
    # [@]: the pattern must not match the shell that runs pgrep
    host.wait_until_fails(f"pgrep -f 'microvm[@]{name}'", timeout=60)
    host.fail("pgrep -u alice qemu")
    host.fail("pgrep virtiofsd")

def qemu_args(host, name):
    pid = host.succeed(f"pgrep -f 'microvm[@]{name}' | head -1").strip()
    return host.succeed(f"tr '\\0' ' ' < /proc/{pid}/cmdline")

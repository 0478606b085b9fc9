# Pure helpers shared by the host module, the guest module, the per-sandbox
# flake and the checks. No pkgs here: everything is a function of lib only, so
# the offline evaluator (nixeval) and `nix flake check` load it the same way.
{ lib }:
let
  # The sandbox name rule of go/internal/names: a lower-case DNS label.
  namePattern = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";

  # Host interface ids (tap, macvtap) are limited to 15 characters (IFNAMSIZ - 1).
  ifPrefix = "ks-";
  maxIfName = 15;

  hexByte = h: i: builtins.substring (2 * i) 2 h;

  # qemu's microvm machine hangs with exactly 2 GiB of RAM (microvm.nix
  # issue 171); both runners give such a guest two MiB more.
  hangingMemory = 2048;

  # The pinned agents (docs/agents.md): one file for Go and Nix.
  agentManifest = builtins.fromJSON (builtins.readFile ../go/internal/agents/manifest.json);
  isUnfree = a: (agentManifest.packages.${a.package}.license or "") == "unfree";
in
{
  inherit namePattern maxIfName hangingMemory agentManifest;

  # Agent names, and those whose licence is unfree (they need explicit consent).
  agentNames = lib.attrNames agentManifest.agents;
  unfreeAgentNames = lib.attrNames (lib.filterAttrs (_: isUnfree) agentManifest.agents);

  # The only system keystone builds guests and runners for: the guest's CPU
  # flags (-vmx/-svm), its kvm-intel/kvm-amd modules and the nested-KVM host
  # settings are x86-specific. The modules assert it (modules/asserts.nix,
  # modules/guest.nix) rather than build a guest that cannot boot.
  systems = [ "x86_64-linux" ];

  # The memory a runner gives qemu for a guest of `mb` MiB.
  qemuMemory = mb: if mb == hangingMemory then mb + 2 else mb;

  # The control path: every sandbox's sshd is reached on 127.0.0.1:<sshPort>,
  # whatever its network mode. In `user` mode the guest's one NIC carries the
  # forward; in every other mode a second, restricted user-mode NIC does
  # (qemu `restrict=on`: the guest reaches nothing through it, only the
  # forward comes in), so the helper never needs the guest's address. The
  # guest gives it a fixed address on qemu's default user network; each
  # qemu has its own, so every sandbox may use the same MAC and address.
  # The host proxy (docs/egress.md, go/internal/proxy GuestAddress): the
  # guest's address of it on the NIC that carries SSH, which qemu forwards
  # per connection to the relay command (guestfwd=…-cmd:).
  proxy.address = "10.0.2.100:3128";

  control = {
    id = "ks-ctl";
    mac = "02:6b:73:00:00:01";
    address = "10.0.2.15";
    prefixLength = 24;
  };

  # Paths that systemd-tmpfiles (whitespace separates its fields) or unit
  # settings such as RequiresMountsFor (a list split at whitespace) would
  # misread, and, for a shared directory, qemu's -fsdev path=… (a comma ends
  # the value; microvm.nix does not escape it). The modules refuse them.
  hasWhitespace = p: builtins.match ".*[[:space:]].*" p != null;
  hasWhitespaceOrComma = p: builtins.match ".*[[:space:],].*" p != null;

  isValidName = name: builtins.match namePattern name != null;

  # The host-side interface id of a sandbox (tap/macvtap): "ks-<name>".
  ifName = name: "${ifPrefix}${name}";

  # A stable, locally administered unicast MAC derived from the name; the
  # runner computes the same value at run time (see runtime.mac below).
  macFor = name:
    let h = builtins.hashString "sha256" name;
    in "02:${hexByte h 0}:${hexByte h 1}:${hexByte h 2}:${hexByte h 3}:${hexByte h 4}";

  # Default SSH port of a declared sandbox, derived from the name: 22300-22999,
  # away from 2223 and up, where `keystone agent start` picks ports for
  # imperative sandboxes. The host module asserts that no two collide.
  sshPortFor = name:
    let h = builtins.hashString "sha256" name;
        n = (lib.fromHexString (builtins.substring 0 4 h));
    in 22300 + lib.mod n 700;

  # Placeholders that the imperative runner replaces with KEYSTONE_* values at
  # run time (lib/runner.nix). They are chosen so that each occurs in the
  # qemu argv only where microvm.nix puts the value; lib/runner.nix checks that
  # at evaluation time and the runner checks it again before exec.
  runtime = {
    hostName = "ks-runtime-name";
    memory = 1048573;        # MiB; "-m" argument and memory-backend size
    vcpus = 251;             # "-smp" argument
    sshPort = 65533;         # hostfwd=tcp:127.0.0.1:PORT-:22
    workspace = "/run/keystone-runtime/workspace";
    guestDir = "/run/keystone-runtime/guest";
    qmpSocket = "keystone-runtime-qmp.sock";
    mac = "02:6b:73:ff:ff:fe";
    # network mode tap: the host tap device; bridge: the host bridge (both
    # at most 15 characters, like the values that replace them)
    tapInterface = "ks-rt-ifname";
    bridge = "ks-rt-bridge";
    # the proxy relay command (KEYSTONE_PROXY_COMMAND); one word: no spaces or commas
    proxyCommand = "ks-runtime-proxy-command";
  };
}

# The imperative runner: one build serves every sandbox of a guest
# configuration (docs/runner-contract.md).
#
# microvm.nix bakes memory, vcpus, shares and forwarded ports into its qemu
# command at build time. The guest is therefore evaluated with placeholders
# (keystone.guest.runtime, values in lib/default.nix `runtime`), the command
# is taken from microvm.nix's own qemu runner code, and bin/microvm-run
# replaces each placeholder with the KEYSTONE_* value before exec'ing qemu.
# It lets the shell split microvm.nix's escaped command into words exactly as
# microvm.nix's own microvm-run does (`set -- <command>`), then substitutes
# per word, so no KEYSTONE_* value is ever parsed by a shell.
#
#   mkRunner { pkgs, microvm = <microvm.nix source>, nixos = <nixosSystem result> }
{ pkgs, microvm, nixos }:
let
  inherit (pkgs) lib;
  k = import ./default.nix { inherit lib; };
  rt = k.runtime;
  config = nixos.config;
  guest = config.keystone.guest;
  mode = guest.network.mode;
  # the setuid helper qemu runs for `-netdev bridge` (microvm.nix's path)
  bridgeHelper = "/run/wrappers/bin/qemu-bridge-helper";

  microvmConfig = config.microvm // { inherit (config.networking) hostName; hypervisor = "qemu"; };
  # a path (offline checks: not copied to the store) or a flake input
  microvmFile = sub: if builtins.isPath microvm then microvm + sub else "${microvm}${sub}";
  microvmLib = import (microvmFile "/lib") { inherit lib; };
  hypervisor = import (microvmFile "/lib/runners/qemu.nix") { inherit pkgs microvmConfig; macvtapFds = { }; };

  # Each placeholder must appear where the runner looks for it: a newer
  # microvm.nix that renders its command differently fails here, at
  # evaluation, not at the user's first start.
  expected = [
    "-name ${rt.hostName}"
    "-m ${toString rt.memory}"
    "size=${toString rt.memory}M"
    "-smp ${toString rt.vcpus}"
    "path=${rt.workspace},"
    "path=${rt.guestDir},"
    "unix:${rt.qmpSocket},"
    "mac=${rt.mac}"
    "keystone.name=${rt.hostName}"
    # the SSH forward: on the user NIC, or on the control NIC of other modes
    "hostfwd=tcp:127.0.0.1:${toString rt.sshPort}-"
    # the host proxy's relay, on the same NIC (modules/guest-egress.nix)
    "-cmd:${rt.proxyCommand}"
  ] ++ lib.optional (mode == "tap") "ifname=${rt.tapInterface},"
    ++ lib.optional (mode == "bridge") "br=${rt.bridge},helper=${bridgeHelper}";
  missing = lib.filter (s: !lib.hasInfix s hypervisor.command) expected;
  command =
    if !guest.runtime then throw "keystone lib.mkRunner: the guest must set keystone.guest.runtime = true"
    else if missing != [ ] then throw "keystone lib.mkRunner: microvm.nix's qemu command lacks ${lib.concatStringsSep ", " missing}; lib/runner.nix must follow microvm.nix"
    else hypervisor.command;

  run = pkgs.writeShellScript "keystone-microvm-run" ''
    set -euo pipefail
    die() { echo "keystone-runner: $*" >&2; exit 1; }
    for v in KEYSTONE_SANDBOX_NAME KEYSTONE_WORKSPACE KEYSTONE_GUEST_DIR KEYSTONE_SSH_PORT KEYSTONE_MEMORY_MB KEYSTONE_VCPUS; do
      [ -n "''${!v:-}" ] || die "$v is not set (see docs/runner-contract.md)"
    done
    name=$KEYSTONE_SANDBOX_NAME
    [[ $name =~ ^${k.namePattern}$ ]] || die "invalid KEYSTONE_SANDBOX_NAME \"$name\""
    [[ $KEYSTONE_MEMORY_MB =~ ^[1-9][0-9]{0,6}$ ]] || die "invalid KEYSTONE_MEMORY_MB \"$KEYSTONE_MEMORY_MB\""
    [[ $KEYSTONE_VCPUS =~ ^[1-9][0-9]{0,2}$ ]] || die "invalid KEYSTONE_VCPUS \"$KEYSTONE_VCPUS\""
    if ! [[ $KEYSTONE_SSH_PORT =~ ^[1-9][0-9]{0,4}$ ]] || (( KEYSTONE_SSH_PORT > 65535 )); then
      die "invalid KEYSTONE_SSH_PORT \"$KEYSTONE_SSH_PORT\""
    fi
    egress=''${KEYSTONE_EGRESS:-allowlist}
    case $egress in allowlist | open | none) ;; *) die "invalid KEYSTONE_EGRESS \"$egress\" (want allowlist, open or none)" ;; esac
    [ -n "''${KEYSTONE_PROXY_COMMAND:-}" ] || die "KEYSTONE_PROXY_COMMAND is not set (see docs/runner-contract.md)"
    proxycmd=''${KEYSTONE_PROXY_COMMAND//,/,,}
    network=''${KEYSTONE_NETWORK:-user}
    [ "$network" = ${mode} ] || die "this runner was built for network mode \"${mode}\", not \"$network\""
    ${lib.optionalString (mode == "tap") ''
      tap=''${KEYSTONE_TAP_INTERFACE:-}
      [[ $tap =~ ^[A-Za-z0-9_.-]{1,${toString k.maxIfName}}$ ]] || die "invalid KEYSTONE_TAP_INTERFACE \"$tap\""
      [ -e "/sys/class/net/$tap" ] || die "no tap interface \"$tap\": create it for this user first (ip tuntap add name $tap mode tap user $(id -un) vnet_hdr multi_queue), or declare the sandbox in keystone.agent.sandboxes"
    ''}${lib.optionalString (mode == "bridge") ''
      bridge=''${KEYSTONE_BRIDGE:-}
      [[ $bridge =~ ^[A-Za-z0-9_.-]{1,${toString k.maxIfName}}$ ]] || die "invalid KEYSTONE_BRIDGE \"$bridge\""
      [ -x ${bridgeHelper} ] || die "bridge networking needs the setuid ${bridgeHelper}: on NixOS set keystone.agent.bridges = [ \"$bridge\" ] (docs/nixos.md)"
    ''}
    case ''${KEYSTONE_NESTED:-1} in
      1) cpu_extra= ;;
      0) cpu_extra=,-vmx,-svm ;;
      *) die "invalid KEYSTONE_NESTED \"$KEYSTONE_NESTED\" (want 0 or 1)" ;;
    esac
    mem=$KEYSTONE_MEMORY_MB
    if [ "$mem" = ${toString k.hangingMemory} ]; then
      # qemu's microvm machine hangs with exactly 2 GiB (lib/default.nix qemuMemory)
      mem=${toString (k.qemuMemory k.hangingMemory)}
      echo "keystone-runner: using $mem MiB instead of ${toString k.hangingMemory} (qemu hangs with exactly 2 GiB)" >&2
    fi
    qmp=''${KEYSTONE_QMP_SOCKET:-qmp.sock}
    [ -d "$KEYSTONE_WORKSPACE" ] || die "workspace \"$KEYSTONE_WORKSPACE\" is not a directory"
    [ -d "$KEYSTONE_GUEST_DIR" ] || die "guest dir \"$KEYSTONE_GUEST_DIR\" is not a directory"
    # qemu option values escape ',' by doubling it
    ws=''${KEYSTONE_WORKSPACE//,/,,} gd=''${KEYSTONE_GUEST_DIR//,/,,} qmpq=''${qmp//,/,,}
    h=$(printf %s "$name" | ${pkgs.coreutils}/bin/sha256sum)
    mac=02:''${h:0:2}:''${h:2:2}:''${h:4:2}:''${h:6:2}:''${h:8:2}

    ${microvmLib.createVolumesScript pkgs config.microvm.volumes}

    # microvm.nix's own runner does `exec ''${command}`: the same words
    set -- ${command}
    args=() prev=
    for a in "$@"; do
      orig=$a
      case $prev in
        -name) [ "$a" = ${rt.hostName} ] && a=$name ;;
        -m) [ "$a" = ${toString rt.memory} ] && a=$mem ;;
        -smp) [ "$a" = ${toString rt.vcpus} ] && a=$KEYSTONE_VCPUS ;;
        -cpu) a=$a$cpu_extra ;;
      esac
      a=''${a//"size=${toString rt.memory}M"/"size=''${mem}M"}
      # virtio-net multiqueue vectors follow the vcpu count (2 * vcpus + 2)
      a=''${a//",vectors=${toString (2 * rt.vcpus + 2)}"/",vectors=$((2 * KEYSTONE_VCPUS + 2))"}
      a=''${a//"path=${rt.workspace},"/"path=$ws,"}
      a=''${a//"path=${rt.guestDir},"/"path=$gd,"}
      a=''${a//"unix:${rt.qmpSocket},"/"unix:$qmpq,"}
      a=''${a//"mac=${rt.mac}"/"mac=$mac"}
      a=''${a//"hostfwd=tcp:127.0.0.1:${toString rt.sshPort}-"/"hostfwd=tcp:127.0.0.1:$KEYSTONE_SSH_PORT-"}
      a=''${a//"keystone.name=${rt.hostName}"/"keystone.name=$name"}
      a=''${a//"-cmd:${rt.proxyCommand}"/"-cmd:$proxycmd"}
      ${lib.optionalString (mode == "user") ''
        # egress open: the user NIC is not restricted (modules/guest-egress.nix)
        if [ "$egress" = open ]; then
          case $a in user,id=${guest.network.id},*) a=''${a//,restrict=on/} ;; esac
        fi
      ''}
      ${lib.optionalString (mode == "tap") ''
        a=''${a//"ifname=${rt.tapInterface},"/"ifname=$tap,"}
        # a tap's queues follow the vcpu count too
        a=''${a//",queues=${toString rt.vcpus}"/",queues=$KEYSTONE_VCPUS"}
      ''}
      ${lib.optionalString (mode == "bridge") ''a=''${a//"br=${rt.bridge},"/"br=$bridge,"}''}
      args+=("$a") prev=$orig
    done
    case " ''${args[*]} " in
      *" ${rt.hostName} "*|*keystone.name=${rt.hostName}*|*/run/keystone-runtime/*|*${rt.qmpSocket}*|*" ${toString rt.memory} "*|*size=${toString rt.memory}M*|*" ${toString rt.vcpus} "*|*vectors=${toString (2 * rt.vcpus + 2)}*|*${rt.mac}*|*127.0.0.1:${toString rt.sshPort}-*|*${rt.proxyCommand}*|*ifname=${rt.tapInterface},*|*queues=${toString rt.vcpus}*|*br=${rt.bridge},*)
        die "a placeholder was left in the qemu command; this runner does not match its microvm.nix" ;;
    esac
    exec -a "microvm@$name" "''${args[@]}"
  '';

  # Asks the guest to power off and returns: ctrl-alt-del reaches systemd's
  # ctrl-alt-del.target, the guest reboots, and qemu (-no-reboot) exits.
  # The same QMP events as microvm.nix's microvm-shutdown, without waiting.
  shutdown = pkgs.writeShellScript "keystone-microvm-shutdown" ''
    set -euo pipefail
    qmp=''${KEYSTONE_QMP_SOCKET:-qmp.sock}
    [ -S "$qmp" ] || { echo "keystone-runner: no QMP socket \"$qmp\" in $PWD" >&2; exit 1; }
    key() { printf '{"type":"key","data":{"down":%s,"key":{"type":"qcode","data":"%s"}}}' "$1" "$2"; }
    {
      echo '{"execute":"qmp_capabilities"}'
      echo "{\"execute\":\"input-send-event\",\"arguments\":{\"events\":[$(key true ctrl),$(key true alt),$(key true delete)]}}"
    } | ${pkgs.socat}/bin/socat -t 1 STDIO "UNIX-CONNECT:$qmp,shut-none" >/dev/null
  '';
in
pkgs.runCommand "keystone-runner-${mode}" {
  passthru = { inherit command nixos; scripts = { inherit run shutdown; }; };
  meta.mainProgram = "microvm-run";
} ''
  mkdir -p $out/bin $out/share/keystone $out/share/microvm
  ln -s ${run} $out/bin/microvm-run
  ln -s ${shutdown} $out/bin/microvm-shutdown
  echo ${lib.escapeShellArg (builtins.toJSON { accel = "kvm"; networks = [ mode ]; })} > $out/share/keystone/runner.json
  # the kernel command line refers to the system without string context:
  # this link keeps it in the runner's closure (as microvm.nix does)
  ln -s ${config.system.build.toplevel} $out/share/microvm/system
''

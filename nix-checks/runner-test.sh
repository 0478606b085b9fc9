#!/usr/bin/env bash
# Runs the imperative runner's real bin/microvm-run script (rendered by
# lib/runner.nix from microvm.nix's own qemu command, offline with nixeval)
# with KEYSTONE_* values, and checks the argv it would exec: every
# placeholder replaced, values passed verbatim, and bad input refused.
# Needs NIXPKGS_LIB and MICROVM_SRC (see run.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
NIXEVAL="${NIXEVAL:-$ROOT/../shared/tools/nixeval}"
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if grep -qxF -- "$2" "$T/args"; then echo "ok   $1"; else echo "FAIL $1: no argument '$2'"; fail=1; fi; }
absent() { if grep -qF -- "$2" "$T/args"; then echo "FAIL $1: '$2' is still there"; fail=1; else echo "ok   $1"; fi; }

# render MODE OUT: the runner script of network mode MODE, printing the argv
# instead of exec'ing the (unbuilt) qemu; fake store tools -> the host's; the
# setuid bridge helper -> a stand-in in $T
render() {
  "$NIXEVAL/eval-module.sh" -q --strict --pkgs vim,wget,htop,direnv,codex,claude-code -e '(import '"$ROOT"'/lib/runner.nix {
      inherit pkgs; microvm = microvmSrc;
      nixos = evalGuest { modules = [ (microvmSrc + "/nixos-modules/microvm") '"$ROOT"'/modules/guest.nix { keystone.guest = { runtime = true; network.mode = "'"$1"'"; }; } ]; };
    }).scripts.run.text' "$ROOT/modules/default.nix" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$T/$2.raw"
  # shellcheck disable=SC2016 # $name is the script's text, not ours to expand
  sed -e 's|^exec -a "microvm@$name" |printf "%s\\n" |' -e 's|/nix/store/[a-z0-9]*-coreutils/bin/||' \
    -e "s|/run/wrappers/bin/qemu-bridge-helper|$T/bridge-helper|g" "$T/$2.raw" >"$T/$2"
}
render user run
render tap run-tap
render bridge run-bridge

mkdir -p "$T/state" "$T/ws,1" "$T/guest"
# the host proxy's relay (docs/egress.md), a comma in it doubled for qemu
proxy_cmd="'/opt/key,stone' agent proxy-relay --sandbox my-app '$T/state/proxy.sock'"
proxy_fwd="guestfwd=tcp:10.0.2.100:3128-cmd:'/opt/key,,stone' agent proxy-relay --sandbox my-app '$T/state/proxy.sock'"
cd "$T/state"
env -i PATH="$PATH" KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest" \
  KEYSTONE_SSH_PORT=2223 KEYSTONE_MEMORY_MB=4096 KEYSTONE_VCPUS=2 KEYSTONE_NESTED=0 KEYSTONE_NETWORK=user \
  KEYSTONE_HOST_UID=1000 KEYSTONE_HOST_GID=1000 KEYSTONE_QMP_SOCKET=qmp.sock KEYSTONE_STATE_DIR="$T/state" \
  KEYSTONE_PROXY_COMMAND="$proxy_cmd" \
  bash "$T/run" >"$T/args" 2>"$T/err" || { echo "FAIL runner exited $?"; cat "$T/err"; exit 1; }
mac="02:$(printf %s my-app | sha256sum | sed -E 's/^(..)(..)(..)(..)(..).*/\1:\2:\3:\4:\5/')"
check "name" "my-app"
check "memory" "4096"
check "vcpus" "2"
check "memory backend" "memory-backend-memfd,id=mem,size=4096M,share=on"
check "workspace share, comma doubled" "local,id=fs0,path=$T/ws,,1,security_model=none"
check "keys share read-only" "local,id=ks-keys,path=$T/guest,security_model=none,readonly=on"
check "ssh forward on loopback, the proxy, restricted" "user,id=ks-net,hostfwd=tcp:127.0.0.1:2223-:22,$proxy_fwd,restrict=on"
check "qmp socket" "unix:qmp.sock,server,nowait"
check "nested off" "host,+x2apic,-sgx,-vmx,-svm"
check "mac from name" "virtio-net-pci,netdev=ks-net,mac=$mac,romfile="
if grep -q "keystone.name=my-app" "$T/args"; then echo "ok   kernel command line names the sandbox"; else echo "FAIL kernel command line"; fail=1; fi
absent "no placeholder left" "keystone-runtime"
absent "no placeholder memory" "1048573"
if [ -e var.img ]; then echo "ok   /var volume created in the working directory"; else echo "FAIL var.img not created in state/"; fail=1; fi

# egress open: the user NIC is not restricted
env -i PATH="$PATH" KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest" \
  KEYSTONE_SSH_PORT=2223 KEYSTONE_MEMORY_MB=4096 KEYSTONE_VCPUS=2 KEYSTONE_PROXY_COMMAND="$proxy_cmd" KEYSTONE_EGRESS=open \
  bash "$T/run" >"$T/args" 2>"$T/err" || { echo "FAIL open runner exited $?"; cat "$T/err"; exit 1; }
check "egress open: not restricted" "user,id=ks-net,hostfwd=tcp:127.0.0.1:2223-:22,$proxy_fwd"

refuse() {  # refuse NAME VAR=VALUE... : the runner must exit non-zero with a message
  local what=$1; shift
  if env -i PATH="$PATH" KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest" \
      KEYSTONE_SSH_PORT=2223 KEYSTONE_MEMORY_MB=4096 KEYSTONE_VCPUS=2 KEYSTONE_PROXY_COMMAND="$proxy_cmd" "$@" bash "$T/run" >/dev/null 2>"$T/err"; then
    echo "FAIL $what: accepted"; fail=1
  else echo "ok   $what refused: $(cat "$T/err")"; fi
}
refuse "bad name" KEYSTONE_SANDBOX_NAME='x;rm -rf /'
refuse "bad port" KEYSTONE_SSH_PORT=70000
refuse "bad memory" KEYSTONE_MEMORY_MB=4G
refuse "other network" KEYSTONE_NETWORK=tap
refuse "missing workspace" KEYSTONE_WORKSPACE="$T/nope"
refuse "unset value" KEYSTONE_VCPUS=
refuse "no proxy command" KEYSTONE_PROXY_COMMAND=
refuse "bad egress mode" KEYSTONE_EGRESS=closed

# Issue 10: other modes keep the guest's traffic on their NIC and add the
# restricted control NIC with the SSH forward, so the helper still dials
# 127.0.0.1:KEYSTONE_SSH_PORT.
base=(KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest"
  KEYSTONE_SSH_PORT=2224 KEYSTONE_MEMORY_MB=2048 KEYSTONE_VCPUS=2 KEYSTONE_QMP_SOCKET=qmp.sock
  KEYSTONE_PROXY_COMMAND="$proxy_cmd" KEYSTONE_EGRESS=open)
# `lo` stands in for the user's tap: the runner only checks that it exists
env -i PATH="$PATH" "${base[@]}" KEYSTONE_NETWORK=tap KEYSTONE_TAP_INTERFACE=lo bash "$T/run-tap" >"$T/args" 2>"$T/err" ||
  { echo "FAIL tap runner exited $?"; cat "$T/err"; exit 1; }
check "tap: the user's tap, a queue per vcpu" "tap,id=ks-rt-ifname,ifname=lo,script=no,downscript=no,queues=2"
check "tap: control NIC, restricted, SSH and the proxy only" "user,id=ks-ctl,restrict=on,hostfwd=tcp:127.0.0.1:2224-10.0.2.15:22,$proxy_fwd"
check "tap: control NIC device" "virtio-net-pci,netdev=ks-ctl,mac=02:6b:73:00:00:01,romfile="
check "memory 2048 -> 2050" "2050"
absent "tap: no placeholder left" "ks-rt-ifname,ifname=ks-rt"
if grep -q "using 2050 MiB instead of 2048" "$T/err"; then echo "ok   says why the memory is 2050"; else echo "FAIL memory bump not reported"; fail=1; fi

printf '#!/bin/sh\n' >"$T/bridge-helper"; chmod +x "$T/bridge-helper"
env -i PATH="$PATH" "${base[@]}" KEYSTONE_NETWORK=bridge KEYSTONE_BRIDGE=br-lan bash "$T/run-bridge" >"$T/args" 2>"$T/err" ||
  { echo "FAIL bridge runner exited $?"; cat "$T/err"; exit 1; }
check "bridge: the bridge from KEYSTONE_BRIDGE" "bridge,id=ks-net,br=br-lan,helper=$T/bridge-helper"
check "bridge: control NIC" "user,id=ks-ctl,restrict=on,hostfwd=tcp:127.0.0.1:2224-10.0.2.15:22,$proxy_fwd"
absent "bridge: no placeholder left" "ks-rt-bridge"
if [ "$(grep -c hostfwd "$T/args")" = 1 ]; then echo "ok   bridge: one forward"; else echo "FAIL bridge: $(grep -c hostfwd "$T/args") forwards"; fail=1; fi

refuse_mode() {  # refuse_mode WHAT SCRIPT VAR=VALUE...
  local what=$1 script=$2; shift 2
  if env -i PATH="$PATH" "${base[@]}" "$@" bash "$T/$script" >/dev/null 2>"$T/err"; then
    echo "FAIL $what: accepted"; fail=1
  else echo "ok   $what refused: $(cat "$T/err")"; fi
}
refuse_mode "tap without a tap device" run-tap KEYSTONE_NETWORK=tap KEYSTONE_TAP_INTERFACE=ks-nonexistent
refuse_mode "tap name too long" run-tap KEYSTONE_NETWORK=tap KEYSTONE_TAP_INTERFACE=ks-much-too-long-name
refuse_mode "bridge without a bridge" run-bridge KEYSTONE_NETWORK=bridge
rm "$T/bridge-helper"
refuse_mode "bridge without the setuid helper" run-bridge KEYSTONE_NETWORK=bridge KEYSTONE_BRIDGE=br0
if grep -q 'keystone.agent.bridges' "$T/err"; then echo "ok   and names the option that installs it"; else echo "FAIL the refusal does not name keystone.agent.bridges"; fail=1; fi
exit $fail

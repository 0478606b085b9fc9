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

"$NIXEVAL/eval-module.sh" -q --strict --pkgs vim,wget,htop,direnv,codex,claude-code -e '(import '"$ROOT"'/lib/runner.nix {
    inherit pkgs; microvm = microvmSrc;
    nixos = evalGuest { modules = [ (microvmSrc + "/nixos-modules/microvm") '"$ROOT"'/modules/guest.nix { keystone.guest.runtime = true; } ]; };
  }).scripts.run.text' "$ROOT/modules/default.nix" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$T/run.raw"
# print the argv instead of exec'ing the (unbuilt) qemu; fake store tools -> the host's
# shellcheck disable=SC2016 # $name is the script's text, not ours to expand
sed -e 's|^exec -a "microvm@$name" |printf "%s\\n" |' -e 's|/nix/store/[a-z0-9]*-coreutils/bin/||' "$T/run.raw" >"$T/run"

mkdir -p "$T/state" "$T/ws,1" "$T/guest"
cd "$T/state"
env -i PATH="$PATH" KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest" \
  KEYSTONE_SSH_PORT=2223 KEYSTONE_MEMORY_MB=4096 KEYSTONE_VCPUS=2 KEYSTONE_NESTED=0 KEYSTONE_NETWORK=user \
  KEYSTONE_HOST_UID=1000 KEYSTONE_HOST_GID=1000 KEYSTONE_QMP_SOCKET=qmp.sock KEYSTONE_STATE_DIR="$T/state" \
  bash "$T/run" >"$T/args" 2>"$T/err" || { echo "FAIL runner exited $?"; cat "$T/err"; exit 1; }
mac="02:$(printf %s my-app | sha256sum | sed -E 's/^(..)(..)(..)(..)(..).*/\1:\2:\3:\4:\5/')"
check "name" "my-app"
check "memory" "4096"
check "vcpus" "2"
check "memory backend" "memory-backend-memfd,id=mem,size=4096M,share=on"
check "workspace share, comma doubled" "local,id=fs0,path=$T/ws,,1,security_model=none"
check "keys share read-only" "local,id=ks-keys,path=$T/guest,security_model=none,readonly=on"
check "ssh forward on loopback" "user,id=ks-net,hostfwd=tcp:127.0.0.1:2223-:22,"
check "qmp socket" "unix:qmp.sock,server,nowait"
check "nested off" "host,+x2apic,-sgx,-vmx,-svm"
check "mac from name" "virtio-net-pci,netdev=ks-net,mac=$mac,romfile=,mq=on,vectors=6"
if grep -q "keystone.name=my-app" "$T/args"; then echo "ok   kernel command line names the sandbox"; else echo "FAIL kernel command line"; fail=1; fi
absent "no placeholder left" "keystone-runtime"
absent "no placeholder memory" "1048573"
if [ -e var.img ]; then echo "ok   /var volume created in the working directory"; else echo "FAIL var.img not created in state/"; fail=1; fi

refuse() {  # refuse NAME VAR=VALUE... : the runner must exit non-zero with a message
  local what=$1; shift
  if env -i PATH="$PATH" KEYSTONE_SANDBOX_NAME=my-app KEYSTONE_WORKSPACE="$T/ws,1" KEYSTONE_GUEST_DIR="$T/guest" \
      KEYSTONE_SSH_PORT=2223 KEYSTONE_MEMORY_MB=4096 KEYSTONE_VCPUS=2 "$@" bash "$T/run" >/dev/null 2>"$T/err"; then
    echo "FAIL $what: accepted"; fail=1
  else echo "ok   $what refused: $(cat "$T/err")"; fi
}
refuse "bad name" KEYSTONE_SANDBOX_NAME='x;rm -rf /'
refuse "bad port" KEYSTONE_SSH_PORT=70000
refuse "bad memory" KEYSTONE_MEMORY_MB=4G
refuse "other network" KEYSTONE_NETWORK=tap
refuse "missing workspace" KEYSTONE_WORKSPACE="$T/nope"
refuse "unset value" KEYSTONE_VCPUS=
exit $fail

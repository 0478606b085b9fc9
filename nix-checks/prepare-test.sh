#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034 # expect() evaluates its single-quoted checks
# Runs the real script of keystone-agent-prepare-<name> (rendered by
# modules/host.nix, offline with nixeval) against a real git project in a
# temporary directory, twice, and checks what a declared sandbox's VM and the
# helper rely on: the clone, the keys and their modes, authorized_keys, the
# runner link; the second run keeps the keys and the workspace.
# Needs NIXPKGS_LIB, MICROVM_SRC, git and ssh-keygen.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
NIXEVAL="${NIXEVAL:-$ROOT/../shared/tools/nixeval}"
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $1"; }
no() { echo "FAIL $1"; fail=1; }
expect() { if eval "$2"; then ok "$1"; else no "$1"; fi; }

git init -q -b main "$T/project"
git -C "$T/project" -c user.email=a@b -c user.name=A commit -q --allow-empty -m init
git -C "$T/project" config user.name "Project Owner"
git -C "$T/project" config user.email owner@example.org
# a hook in the project must not run: the clone is made with hooks disabled
mkdir -p "$T/project/.git/hooks"
printf '#!/bin/sh\ntouch %s/hook-ran\n' "$T" >"$T/project/.git/hooks/post-checkout"
chmod +x "$T/project/.git/hooks/post-checkout"

"$NIXEVAL/eval-module.sh" -q --strict --pkgs vim,wget,htop,direnv,codex,claude-code -e "(evalHost [ {
    keystone.agent.package = pkgs.mkFake \"keystone\" { }; users.users.alice.isNormalUser = true;
    keystone.agent.sandboxes.demo = { projectPath = \"$T/project\"; owner = \"alice\"; dir = \"$T/sb\"; authorizedKeys = [ \"ssh-ed25519 AAAAextra alice@laptop\" ]; };
  } ]).config.systemd.services.keystone-agent-prepare-demo.script" "$ROOT/modules/default.nix" \
  | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$T/prepare.sh.fake"
# the helper the unit runs: this tree's, in place of the fake package
(cd "$ROOT/go" && go build -o "$T/keystone" ./cmd/keystone)
sed "s|/nix/store/[a-z0-9]*-keystone/bin/keystone|$T/keystone|g" "$T/prepare.sh.fake" >"$T/prepare.sh"

mkdir -p "$T/sb/state"   # tmpfiles makes these on the host
bash "$T/prepare.sh" >"$T/out" 2>&1 || { no "prepare exited $?"; cat "$T/out"; exit 1; }
s="$T/sb/state"
expect "workspace is a clone of the project" '[ "$(git -C "$T/sb/workspace" rev-parse HEAD)" = "$(git -C "$T/project" rev-parse HEAD)" ]'
expect "no hook ran during the clone" '[ ! -e "$T/hook-ran" ]'
expect "no hardlinks into the project" '[ "$(find "$T/sb/workspace/.git/objects" -type f -links +1 | wc -l)" = 0 ]'
expect "client key, mode 600" '[ "$(stat -c %a "$s/client_ed25519")" = 600 ]'
expect "guest host key, mode 600" '[ "$(stat -c %a "$s/guest/ssh_host_ed25519_key")" = 600 ]'
expect "host key public half for pinning" 'ssh-keygen -l -f "$s/guest/ssh_host_ed25519_key.pub" >/dev/null'
expect "client key is not in the guest dir" '! grep -rq "PRIVATE KEY" "$s/guest" --exclude=ssh_host_ed25519_key'
expect "authorized_keys: client key first" '[ "$(head -1 "$s/guest/authorized_keys")" = "$(cat "$s/client_ed25519.pub")" ]'
expect "authorized_keys: declared extra key" 'grep -qx "ssh-ed25519 AAAAextra alice@laptop" "$s/guest/authorized_keys"'
expect "no password-auth marker" '[ ! -e "$s/guest/password-auth" ]'
expect "runner linked as state/current" '[ -L "$s/current" ] && case $(readlink "$s/current") in /nix/store/*) true ;; *) false ;; esac'
expect "log lines are prefixed" 'grep -q "^\[keystone-agent\] cloning" "$T/out"'
expect "session environment for the guest" 'grep -qx "export KEYSTONE_SANDBOX='"'"'demo'"'"'" "$s/guest/environment"'
expect "the project's git identity for the guest" '[ "$(git config --file "$s/guest/gitconfig" user.name)" = "Project Owner" ] && [ "$(git config --file "$s/guest/gitconfig" commit.gpgsign)" = false ]'

hostkey=$(cat "$s/guest/ssh_host_ed25519_key.pub")
echo change >"$T/sb/workspace/file-from-guest"
bash "$T/prepare.sh" >"$T/out2" 2>&1 || { no "second prepare exited $?"; cat "$T/out2"; }
expect "second run keeps the host key" '[ "$(cat "$s/guest/ssh_host_ed25519_key.pub")" = "$hostkey" ]'
expect "second run keeps the workspace" '[ -e "$T/sb/workspace/file-from-guest" ]'
expect "second run does not clone again" '! grep -q cloning "$T/out2"'
mkdir -p "$T/sb2/state" "$T/sb2/workspace"
echo keep >"$T/sb2/workspace/notes"
sed "s|$T/sb|$T/sb2|g" "$T/prepare.sh" >"$T/prepare2.sh"
if bash "$T/prepare2.sh" >"$T/out3" 2>&1; then no "a workspace that is not a clone was accepted"; else ok "a workspace that is not a clone stops the unit: $(grep -o 'is not a git clone.*' "$T/out3")"; fi
expect "and is left as it was" '[ "$(ls -A "$T/sb2/workspace")" = notes ] && [ ! -e "$T/sb2/workspace.tmp" ]'
exit $fail

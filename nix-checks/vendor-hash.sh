#!/usr/bin/env bash
# Prints the vendorHash of lib/package.nix for the committed go/ tree: the NAR
# hash of `go mod vendor` output, which is what buildGoModule's goModules
# derivation produces. Run after changing go.mod/go.sum or importing a new
# package of a dependency, and paste the result into lib/package.nix.
# Needs go (with module download access) and nix (`nix hash path`, offline).
#   vendor-hash.sh [REV]       the go/ tree of a commit (default HEAD)
#   vendor-hash.sh --worktree  the go/ tree as it is on disk
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T="$(mktemp -d)"; trap 'chmod -R u+w "$T"; rm -rf "$T"' EXIT
if [ "${1:-}" = --worktree ]; then
  cp -r "$ROOT/go" "$T/go"
  rm -rf "$T/go/vendor"
else
  git -C "$ROOT" archive "${1:-HEAD}" go | tar x -C "$T"
fi
(cd "$T/go" && go mod vendor -o "$T/vendor")
nix --extra-experimental-features nix-command hash path "$T/vendor"

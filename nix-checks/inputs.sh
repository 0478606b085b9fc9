#!/usr/bin/env bash
# Prints the evaluation inputs of nix-checks/run.sh for the revisions in
# flake.lock, so that any machine evaluates against exactly what the flake
# pins (not whatever nixpkgs lib happens to be at hand):
#   eval "$(nix-checks/inputs.sh)" && nix-checks/run.sh
# prints
#   export NIXPKGS_LIB=/nix/store/…-source   nixpkgs at the locked rev (run.sh uses its lib/)
#   export MICROVM_SRC=/nix/store/…-source   microvm.nix at the locked rev
# It runs `nix flake archive`, which fetches the locked inputs into the Nix
# store (network on first use; their narHash is checked against flake.lock).
# Needs nix >= 2.4 with flakes and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
json=$(cd "$ROOT" && nix --extra-experimental-features 'nix-command flakes' flake archive --json .) || {
  echo "inputs.sh: nix flake archive failed (it needs network the first time)" >&2; exit 1; }
printf '%s' "$json" | python3 -c '
import json, shlex, sys
inputs = json.load(sys.stdin)["inputs"]
print("export NIXPKGS_LIB=" + shlex.quote(inputs["nixpkgs"]["path"]))
print("export MICROVM_SRC=" + shlex.quote(inputs["microvm"]["path"]))
'

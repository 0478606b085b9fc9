#!/usr/bin/env bash
# The Nix side's checks on a machine without nixpkgs (CI):
#   1. always: `nix-instantiate --parse` of every tracked .nix file, and the
#      NixOS agents test's model-API stub (api-stub-test.sh)
#   2. when NIXPKGS_LIB and MICROVM_SRC name the two source trees (nixpkgs.lib
#      and microvm.nix, see ../shared/tools/nixeval/README.md): the module
#      evaluation tests (host-test.nix, guest-test.nix, nixos-tests-test.nix)
#      with the offline evaluator, the runner script test, a dry run of
#      the NixOS tests' Python scripts against a stand-in driver, and the flake's outputs evaluated with
#      nixeval standing in for nixpkgs (flake-check.sh; `nix flake check`
#      itself needs pkgs.testers, i.e. real nixpkgs).
# Exit status: 0 all run checks pass; 1 a check failed; 2 a tool is missing.
#   NIXEVAL   nixeval directory (default: ../shared/tools/nixeval next to the repo)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
NIXEVAL="${NIXEVAL:-$ROOT/../shared/tools/nixeval}"
# fake package names the guest uses beyond nixeval's default set
PKGS=vim,wget,htop,direnv,codex,claude-code,procps,openssl,nixfmt-rfc-style
rc=0
say() { echo "nix-checks: $*"; }

command -v nix-instantiate >/dev/null || { say "nix-instantiate not found (Debian: apt-get install nix-bin)"; exit 2; }

cd "$ROOT" || exit 2
mapfile -t files < <(git ls-files '*.nix' 2>/dev/null; git ls-files --others --exclude-standard '*.nix' 2>/dev/null)
bad=0
for f in "${files[@]}"; do
  [ -e "$f" ] || continue
  if ! out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
    say "parse error in $f"; echo "$out" | grep -v "^warning: the group 'nixbld'" >&2; bad=1
  fi
done
if [ $bad = 0 ]; then say "parse: ${#files[@]} .nix files ok"; else rc=1; fi

# the model-API stub of nixos-tests/agents.nix, and its check, as that test runs them
if command -v openssl >/dev/null && command -v curl >/dev/null && command -v python3 >/dev/null; then
  log="${TMPDIR:-/tmp}/keystone-api-stub-test.log"
  if "$HERE/api-stub-test.sh" >"$log" 2>&1; then
    say "api-stub-test: ok ($(grep -c '^ok' "$log") checks)"
  else
    say "api-stub-test: FAILED"; cat "$log"; rc=1
  fi
else
  say "SKIPPED api-stub-test: it needs openssl, curl and python3"
fi

if [ -z "${NIXPKGS_LIB:-}" ] || [ -z "${MICROVM_SRC:-}" ]; then
  say "SKIPPED module evaluation tests: NIXPKGS_LIB and MICROVM_SRC are not set (they name nixpkgs.lib and microvm.nix source trees; see docs/nixos.md, section Checks)"
  exit $rc
fi
[ -x "$NIXEVAL/eval-module.sh" ] || { say "nixeval not found at $NIXEVAL (set NIXEVAL)"; exit 2; }

# Say what the options are checked against: the lib at hand may differ from
# the lock's (nix-checks/inputs.sh prints the locked trees).
libdir=$NIXPKGS_LIB; [ -e "$libdir/lib/default.nix" ] && libdir=$libdir/lib
libver=$(nix-instantiate --eval --expr "(import $libdir).version" 2>/dev/null | tr -d '"') || libver=unknown
locked=$(python3 -c 'import json,sys; n=json.load(open(sys.argv[1]))["nodes"]; print(n["nixpkgs"]["locked"]["rev"][:12], n["microvm"]["locked"]["rev"][:12])' flake.lock 2>/dev/null) || locked="? ?"
say "evaluating against nixpkgs lib $libver ($libdir) and microvm.nix at $MICROVM_SRC; flake.lock pins nixpkgs ${locked% *} and microvm.nix ${locked#* } (nix-checks/inputs.sh)"

for t in host-test guest-test nixos-tests-test; do
  report=$("$NIXEVAL/eval-module.sh" -q --pkgs "$PKGS" modules/default.nix "nix-checks/$t.nix")
  st=$?
  summary=$(printf '%s' "$report" | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["summary"]; print("%d/%d passed" % (s["passed"], s["total"])); [print("  FAIL", f["name"], json.dumps(f)[:600]) for f in d["failures"]]' 2>&1) || summary="$report"
  say "$t: $summary"
  [ $st = 0 ] || rc=1
done

# scripts the modules generate, run for real: the runner's argv, the prepare unit
for t in runner-test prepare-test; do
  log="${TMPDIR:-/tmp}/keystone-$t.log"
  if NIXEVAL="$NIXEVAL" "$HERE/$t.sh" >"$log" 2>&1; then
    say "$t: ok ($(grep -c '^ok' "$log") checks)"
  else
    say "$t: FAILED"; cat "$log"; rc=1
  fi
done

# the shell the modules generate, linted like microvm.nix's checks/shellcheck.nix
if command -v shellcheck >/dev/null; then
  T=$(mktemp -d)
  if "$NIXEVAL/eval-module.sh" -q --strict --pkgs "$PKGS" \
      -e '(import ./nix-checks/scripts.nix) { inherit lib pkgs evalHost evalGuest microvmSrc; }' modules/default.nix >"$T/scripts.json" &&
     python3 - "$T" <<'PY'
import json, subprocess, sys
d = sys.argv[1]
bad = 0
for name, text in json.load(open(d + "/scripts.json")).items():
    path = "%s/%s.sh" % (d, name)
    open(path, "w").write("#!/usr/bin/env bash\n" + text)
    r = subprocess.run(["shellcheck", "-s", "bash", path], capture_output=True, text=True)
    if r.returncode:
        print(r.stdout); bad = 1
sys.exit(bad)
PY
  then say "shellcheck: generated scripts clean"; else say "shellcheck: generated scripts have findings"; rc=1; fi
  rm -rf "$T"
else
  say "SKIPPED shellcheck of generated scripts: shellcheck not installed (Debian: apt-get install shellcheck)"
fi

# the polkit rules, run by node against a stand-in polkit object
if command -v node >/dev/null; then
  if "$NIXEVAL/eval-module.sh" -q --strict --pkgs "$PKGS" -e '(evalHost [ {
        keystone.agent.package = pkgs.mkFake "keystone" { }; users.users.alice.isNormalUser = true; users.users.bob.isNormalUser = true;
        keystone.agent.sandboxes.demo = { projectPath = "/home/alice/p"; owner = "alice"; };
        keystone.agent.sandboxes.other = { projectPath = "/home/bob/p"; owner = "bob"; sshPort = 2400; }; } ]).config.security.polkit.extraConfig' modules/default.nix \
      | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' | node nix-checks/polkit-test.js; then :; else rc=1; fi
else
  say "SKIPPED polkit rule test: node not installed"
fi

# the NixOS tests' scripts: lib.py + testScript, run against a stand-in test
# driver (nixos-test-dry-run.py: every name, method and keyword must exist),
# and linted by pyflakes, as the driver lints it before a run
pyflakes=()
for p in pyflakes3 pyflakes "python3 -m pyflakes" "/usr/bin/python3 -m pyflakes"; do
  read -ra cmd <<<"$p"
  if "${cmd[@]}" --version >/dev/null 2>&1; then pyflakes=("${cmd[@]}"); break; fi
done
[ ${#pyflakes[@]} -gt 0 ] || say "SKIPPED pyflakes of the NixOS tests' scripts: pyflakes not installed (Debian: apt-get install python3-pyflakes)"
for t in declared imperative agents; do
  script="${TMPDIR:-/tmp}/keystone-nixos-test-$t.py"
  "$NIXEVAL/eval-module.sh" -q --strict --pkgs "$PKGS,procps" -e "(import $ROOT/nixos-tests/$t.nix { self = { }; }).testScript" modules/default.nix \
    | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$script"
  if out=$(python3 "$HERE/nixos-test-dry-run.py" "nixos-tests/$t.nix" <"$script" 2>&1); then
    say "nixos-tests/$t.nix: Python test script runs against a stand-in driver ($out)"
  else
    say "nixos-tests/$t.nix: Python test script FAILED against a stand-in driver:"; echo "$out" | tail -5; rc=1
  fi
  if [ ${#pyflakes[@]} -gt 0 ] && ! PYFLAKES_BUILTINS=host,subtest,start_all,machines,driver "${pyflakes[@]}" "$script"; then
    say "nixos-tests/$t.nix: pyflakes findings"; rc=1
  fi
  rm -f "$script"
done

# the flake's outputs, evaluated with nixeval as nixpkgs (in a private store)
attrs=(packages.x86_64-linux.keystone.name packages.x86_64-linux.sandbox-runner.name
  apps.x86_64-linux.default.program checks.x86_64-linux.module-eval.name checks.x86_64-linux.shellcheck.name
  checks.x86_64-linux.go-test.name checks.x86_64-linux.template-host.name
  packages.x86_64-linux.keystone-unwrapped.name
  templates.host.path templates.sandbox.path)
# (devShells need pkgs.mkShell and formatter pkgs.nixfmt-rfc-style, which the stand-in lacks)
if ! command -v nix >/dev/null; then
  say "SKIPPED flake outputs: no nix command"
elif out=$("$NIXEVAL/flake-check.sh" "$ROOT" eval "${attrs[@]}" 2>&1); then
  say "flake outputs evaluate (${#attrs[@]} attributes, nixeval as nixpkgs)"
else
  say "flake outputs FAILED:"; echo "$out" | grep -v -e "^warning" -e "^ *→" -e "^•" | tail -30; rc=1
fi
exit $rc

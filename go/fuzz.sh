#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for a few seconds each
# (FUZZTIME, default 3s): the parsers of sandbox-provided bytes, from their
# committed seed corpus (testdata/fuzz) onwards. ./test calls it; for a longer
# search: FUZZTIME=10m go/fuzz.sh, or go test -fuzz FuzzX ./internal/...
set -euo pipefail
cd "$(dirname "$0")"
fuzztime=${FUZZTIME:-3s}
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -n1 dirname | sort -u); do
  # The package's own test files only: a target of a package below it is
  # not in it ("no fuzz tests to fuzz").
  for target in $(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    echo "fuzz ./$dir $target ($fuzztime)"
    for try in 1 2; do
      if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir" 2>&1); then
        break
      fi
      # Go before 1.27 can fail a duration-bounded run with a bare "context
      # deadline exceeded" when the time is up while a worker is busy (a
      # loaded machine; go.dev/issue/75804): no input failed, none was
      # written. Run such a target once more; any other failure stops here.
      if [ "$try" = 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
        echo "fuzz ./$dir $target: the fuzzer's own deadline race (go.dev/issue/75804), no failing input; once more"
        continue
      fi
      echo "$out"
      exit 1
    done
  done
done

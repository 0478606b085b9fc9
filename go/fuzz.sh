#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for a few seconds each
# (FUZZTIME, default 3s): the parsers of sandbox-provided bytes, from their
# committed seed corpus (testdata/fuzz) onwards. ./test calls it; for a longer
# search: FUZZTIME=10m go/fuzz.sh, or go test -fuzz FuzzX ./internal/...
set -euo pipefail
cd "$(dirname "$0")"
fuzztime=${FUZZTIME:-3s}
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -n1 dirname | sort -u); do
  for target in $(grep -h --include='*_test.go' -r -o '^func Fuzz[A-Za-z0-9_]*' "$dir" | sed 's/^func //' | sort -u); do
    echo "fuzz ./$dir $target ($fuzztime)"
    if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir" 2>&1); then
      echo "$out"
      exit 1
    fi
  done
done

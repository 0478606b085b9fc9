#!/usr/bin/env bash
# The model-API stub of the NixOS agents test (nixos-tests/api-stub.py), run
# here as that test runs it: it answers the three APIs over TLS, and its
# `check` passes on requests that carried the host's keys and fails on a
# placeholder, a missing key or a request that never came.
# Needs python3, openssl and curl.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STUB="$(dirname "$HERE")/nixos-tests/api-stub.py"
T="$(mktemp -d)"; pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $1"; }
no() { echo "FAIL $1"; fail=1; }
check() { python3 "$STUB" check --log "$T/log" --credentials "$T/creds" "$@" >"$T/check.out"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=keystone-test-api-stub -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$STUB" serve --port "$port" --cert "$T/cert.pem" --key "$T/key.pem" --log "$T/log" 2>"$T/stub.err" &
pid=$!
for _ in $(seq 50); do [ -e "$T/log" ] && curl -s --cacert "$T/cert.pem" "https://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
api() { curl -sS --cacert "$T/cert.pem" "https://127.0.0.1:$port$1" "${@:2}"; }
printf 'ANTHROPIC_API_KEY=sk-ant-real\nOPENAI_API_KEY=sk-openai-real\nGEMINI_API_KEY=gemini-real\n' >"$T/creds"

: >"$T/log"
out=$(api /v1/messages -H 'x-api-key: sk-ant-real' -d '{"model":"m","stream":true}')
if grep -q 'event: message_stop' <<<"$out" && grep -q 'stub says hi' <<<"$out"; then ok "Messages API streams"; else no "Messages API streams: $out"; fi
if check --var ANTHROPIC_API_KEY --header x-api-key --path /v1/messages --stream; then ok "check: the real key"; else no "check: the real key: $(cat "$T/check.out")"; fi
if ! check --var OPENAI_API_KEY --header authorization --prefix 'Bearer ' --path /v1/responses; then ok "check: a request that never came fails"; else no "check: a request that never came passed"; fi

api /v1/messages -H 'x-api-key: keystone-placeholder-anthropic-api-key' -d '{}' >/dev/null
if ! check --var ANTHROPIC_API_KEY --header x-api-key --path /v1/messages && grep -q 'x-api-key is a placeholder' "$T/check.out" && ! grep -q real "$T/check.out"; then
  ok "check: a placeholder fails, and no key is printed"
else no "check: a placeholder: $(cat "$T/check.out")"; fi

: >"$T/log"
out=$(api /v1/responses -H 'Authorization: Bearer sk-openai-real' -H 'Transfer-Encoding: chunked' -d '{"stream":true}')
if grep -q 'response.completed' <<<"$out"; then ok "Responses API (chunked request)"; else no "Responses API: $out"; fi
if check --var OPENAI_API_KEY --header authorization --prefix 'Bearer ' --path /v1/responses; then ok "check: Bearer key"; else no "check: Bearer key: $(cat "$T/check.out")"; fi

: >"$T/log"
out=$(api '/v1beta/models/g:generateContent' -H 'x-goog-api-key: gemini-real' -d '{}')
api '/v1beta/models/g:generateContent?key=not-held' -d '{}' >/dev/null
if grep -q 'stub says hi' <<<"$out"; then ok "Gemini generateContent"; else no "Gemini: $out"; fi
if ! check --var GEMINI_API_KEY --header x-goog-api-key --path /v1beta/ && grep -q 'query key is a key the host does not hold' "$T/check.out"; then
  ok "check: a key the host does not hold fails"
else no "check: a foreign key: $(cat "$T/check.out")"; fi

exit $fail

"""The model APIs' stand-in on the NixOS test host's loopback (nixos-tests/agents.nix).

serve: answers the Anthropic Messages API, the OpenAI Responses API and the
Gemini API's generateContent with one fixed text (streamed as server-sent
events when asked), over TLS, as go/internal/testenv/apistub does for the Go
tests, and writes one JSON line per request: method, path, whether it asked
to stream, and the key-carrying headers (x-api-key, authorization,
x-goog-api-key, the ?key= parameter) as they arrived.

check: reads that log and the credentials file the sandbox's proxy was given,
and fails when any request reached the stub with a key that is not one of the
file's (a placeholder, or nothing the host holds), or when no request under
--path carried the expected key in --header. It prints names and paths,
never a key.
"""
import argparse
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ANSWER = "stub says hi"
KEY_HEADERS = ("x-api-key", "authorization", "x-goog-api-key")
MAX_BODY = 8 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file = None
    lock = threading.Lock()

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def log_message(self, fmt, *args):
        sys.stderr.write("api-stub: " + fmt % args + "\n")

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while len(body) <= MAX_BODY:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            return body
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(min(n, MAX_BODY))

    def serve(self):
        try:
            req = json.loads(self.read_body() or b"{}")
        except ValueError:
            req = {}
        if not isinstance(req, dict):
            req = {}
        url = urlsplit(self.path)
        record = {"method": self.command, "path": url.path, "stream": bool(req.get("stream"))}
        for h in KEY_HEADERS:
            if h in self.headers:
                record[h] = self.headers[h]
        key = parse_qs(url.query).get("key")
        if key:
            record["query key"] = key[0]
        with self.lock:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

        model = req.get("model") or "claude-stub"
        path = url.path
        if path.endswith(":streamGenerateContent"):
            self.events([(None, gemini())])
        elif path.endswith(":generateContent"):
            self.json(200, gemini())
        elif path.endswith(":countTokens"):
            self.json(200, {"totalTokens": 5})
        elif path.endswith("/responses") and self.command == "POST":
            self.events(responses())
        elif path.endswith("/count_tokens"):
            self.json(200, {"input_tokens": 10})
        elif path.endswith("/v1/messages") and req.get("stream"):
            self.events(message_events(model))
        elif path.endswith("/v1/messages"):
            self.json(200, message(model))
        else:
            self.json(404, {"type": "error", "error": {"type": "not_found_error", "message": "stub: no " + path}})

    def json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def events(self, events):
        # no length: the stream ends when the connection closes
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            head = "event: %s\n" % name if name else ""
            self.wfile.write(("%sdata: %s\n\n" % (head, json.dumps(data))).encode())
            self.wfile.flush()


def message(model):
    return {"id": "msg_stub", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5}}


def message_events(model):
    start = dict(message(model), content=[], stop_reason=None)
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def gemini():
    return {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": ANSWER}]}}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}}


def responses():
    msg = {"type": "message", "id": "msg_stub", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
    in_progress = {"type": "message", "id": "msg_stub", "status": "in_progress", "role": "assistant", "content": []}
    usage = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8}
    events = [
        {"type": "response.created", "response": {"id": "resp_stub", "object": "response", "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": in_progress},
        {"type": "response.output_text.delta", "item_id": "msg_stub", "output_index": 0, "content_index": 0, "delta": ANSWER},
        {"type": "response.output_item.done", "output_index": 0, "item": msg},
        {"type": "response.completed", "response": {"id": "resp_stub", "object": "response", "status": "completed", "output": [msg], "usage": usage}},
    ]
    return [(e["type"], e) for e in events]


def serve(args):
    Handler.log_file = open(args.log, "a")
    httpd = ThreadingHTTPServer((args.address, args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print("api-stub: listening on https://%s:%d" % (args.address, args.port), flush=True)
    httpd.serve_forever()


def read_credentials(path):
    creds = {}
    with open(path) as f:
        for line in f:
            name, sep, value = line.strip().partition("=")
            if sep:
                creds[name] = value
    return creds


def check(args):
    creds = read_credentials(args.credentials)
    held = set(creds.values()) | {"Bearer " + v for v in creds.values()}
    want = args.prefix + creds[args.var]
    bad, hits, streamed = [], 0, False
    with open(args.log) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:
        for h in KEY_HEADERS + ("query key",):
            if h in r and r[h] not in held:
                kind = "a placeholder" if "keystone-placeholder" in r[h] else "a key the host does not hold"
                bad.append("%s %s: %s is %s" % (r["method"], r["path"], h, kind))
        if r["path"].startswith(args.path) and r.get(args.header) == want:
            hits += 1
            streamed = streamed or r["stream"]
    for b in bad:
        print("api-stub check: " + b)
    if not hits:
        print("api-stub check: no request under %s carried %s in %s (%d requests)" % (args.path, args.var, args.header, len(records)))
    if args.stream and hits and not streamed:
        print("api-stub check: none of the %d requests under %s streamed" % (hits, args.path))
    ok = not bad and hits and (streamed or not args.stream)
    print("api-stub check: %s: %d of %d requests under %s carried %s in %s" % (
        "ok" if ok else "FAILED", hits, len(records), args.path, args.var, args.header))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(prog="api-stub")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--log", required=True)
    c = sub.add_parser("check")
    c.add_argument("--log", required=True)
    c.add_argument("--credentials", required=True, help="NAME=value lines, as the proxy's credentials file")
    c.add_argument("--var", required=True, help="the credential expected, e.g. ANTHROPIC_API_KEY")
    c.add_argument("--header", required=True, help="where it is expected, e.g. x-api-key")
    c.add_argument("--prefix", default="", help='what precedes it there, e.g. "Bearer "')
    c.add_argument("--path", default="/", help="requests whose path starts with this must include one with the key")
    c.add_argument("--stream", action="store_true", help="one of them asked to stream")
    args = p.parse_args()
    sys.exit(serve(args) if args.cmd == "serve" else check(args))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A consumer of stalewatch's CloudEvents, on the CloudEvents Python SDK (PyPI `cloudevents`).

It listens for POSTs, verifies `X-Signature: sha256=<hex>` (HMAC-SHA256 of the exact body,
keyed by the same secret as the agent's --notify-secret-file) when a secret is given, parses
the event with the SDK (structured or binary mode), skips ids it has seen (the agent's ids are
stable per transition), prints each new event as one JSON line, and for
io.stalewatch.image.base_updated runs --on-base-updated CMD with the event on stdin: the hook
where a pipeline is triggered (a rebuild of data.source at data.revision).

    cloudevents-consumer.py --port 8080 [--secret-file FILE] [--on-base-updated CMD]

Answers 202 when taken (or already seen), 401 on a bad signature, 400 on a body that is not a
CloudEvent: the agent retries only 408, 429 and 5xx, so a refusal is not retried forever.
"""
import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.http import from_http

BASE_UPDATED = "io.stalewatch.image.base_updated"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--secret-file")
    ap.add_argument("--on-base-updated", help="command run with a base_updated event on stdin")
    ap.add_argument("--port-file", help="write the bound port here (for --port 0)")
    opts = ap.parse_args()
    secret = open(opts.secret_file, "rb").read().strip() if opts.secret_file else None
    seen = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if secret is not None:
                want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, self.headers.get("x-signature", "")):
                    return self.answer(401)
            try:
                event = from_http(dict(self.headers), body)
            except Exception as e:  # the SDK raises several kinds for a bad body
                print(f"not a CloudEvent: {e}", file=sys.stderr, flush=True)
                return self.answer(400)
            with lock:
                new = event["id"] not in seen
                seen.add(event["id"])
            if new:
                doc = {"id": event["id"], "type": event["type"], "source": event["source"],
                       "subject": event.get("subject"), "data": event.data}
                print(json.dumps(doc, sort_keys=True), flush=True)
                if event["type"] == BASE_UPDATED and opts.on_base_updated:
                    subprocess.run(opts.on_base_updated, shell=True, input=json.dumps(doc).encode())
            self.answer(202)

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((opts.bind, opts.port), Handler)
    if opts.port_file:
        with open(opts.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        import os
        os.replace(opts.port_file + ".tmp", opts.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A CloudEvents receiver for the tests: answers each POST with the next status of a list
(the last one repeats), optionally after a delay, and records every request (headers and the
exact body) as a JSON line. The port it bound is written to PORTFILE.

usage: cloudevents_receiver.py PORTFILE LOG [--statuses 500,202] [--delay SECONDS] [--port N]
"""
import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.ArgumentParser()
args.add_argument("portfile")
args.add_argument("log")
args.add_argument("--statuses", default="202")
args.add_argument("--delay", type=float, default=0.0)
args.add_argument("--port", type=int, default=0)
args.add_argument("--host", default="127.0.0.1")  # a lab cluster's pods reach the host's address
opts = args.parse_args()
statuses = [int(s) for s in opts.statuses.split(",")]
lock = threading.Lock()
served = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global served
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            status = statuses[min(served, len(statuses) - 1)]
            served += 1
            with open(opts.log, "a") as f:
                f.write(json.dumps({
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": base64.b64encode(body).decode(),
                    "status": status,
                }) + "\n")
        time.sleep(opts.delay)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer((opts.host, opts.port), Handler)
with open(opts.portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.replace(opts.portfile + ".tmp", opts.portfile)
server.serve_forever()

#!/usr/bin/env python3
"""The lab's Alertmanager receiver: every webhook notification's JSON body is appended, one per
line, to --log (written and flushed before the 200 answer, so a reader that sees the answer
sees the line). Anything else is a 400; the server never grows memory per request."""
import argparse
import http.server
import json
import threading

LOCK = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= 1 << 20:
            self.send_error(400, "body length")
            return
        body = self.rfile.read(length)
        try:
            doc = json.loads(body)
        except ValueError:
            self.send_error(400, "not JSON")
            return
        with LOCK, open(self.server.log_path, "a") as f:
            f.write(json.dumps(doc, sort_keys=True) + "\n")
            f.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Receiver)
    server.log_path = a.log
    open(a.log, "a").close()
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The lab's cluster DNS, in CoreDNS' place (no DNS image can be pulled here): answers A queries
for `<service>.<namespace>.svc.<domain>` from the API — a Service's cluster IP, or a headless
Service's ready endpoint addresses — as Kubernetes' DNS specification says, NODATA for other
types of a known name, NXDOMAIN for every other name (pods reach nothing outside the machine).
UDP only (answers are a few addresses: never truncated). The kubelet's --cluster-dns is the
`kube-dns` Service, whose endpoint is this server on the host's address."""
import argparse
import json
import socket
import ssl
import struct
import threading
import time
import urllib.request


class Names:
    """(service, namespace) → addresses, refreshed from the API every second."""

    def __init__(self, api, tls, token):
        self.api, self.tls, self.token = api, tls, token
        self.table, self.lock = {}, threading.Lock()

    def get(self, path):
        req = urllib.request.Request(f"{self.api}{path}", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.tls, timeout=10) as r:
            return json.load(r)["items"]

    def refresh_forever(self):
        while True:
            try:
                endpoints = {(e["metadata"]["name"], e["metadata"]["namespace"]): e for e in self.get("/api/v1/endpoints")}
                table = {}
                for s in self.get("/api/v1/services"):
                    key = (s["metadata"]["name"], s["metadata"]["namespace"])
                    ip = s["spec"].get("clusterIP")
                    if ip and ip != "None":
                        table[key] = [ip]
                    else:  # headless: the ready endpoints
                        ep = endpoints.get(key, {})
                        table[key] = sorted({a["ip"] for sub in ep.get("subsets") or [] for a in sub.get("addresses") or []})
                with self.lock:
                    self.table = table
            except Exception as e:  # the API down: keep the last table
                print(f"dns: refresh: {e}", flush=True)
            time.sleep(1)

    def lookup(self, name, domain):
        """Addresses of `name`, or None when it is no name of the cluster."""
        suffix = f".svc.{domain}"
        if not name.endswith(suffix):
            return None
        parts = name[: -len(suffix)].split(".")
        if len(parts) != 2:
            return None
        with self.lock:
            return self.table.get((parts[0], parts[1]))


def answer(query, names, domain):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    if flags & 0x8000 or qd != 1:
        return None
    labels, i = [], 12
    while i < len(query) and query[i]:
        n = query[i]
        if n & 0xC0 or i + 1 + n > len(query):
            return None
        labels.append(query[i + 1: i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    if i + 5 > len(query):
        return None
    qtype, qclass = struct.unpack(">HH", query[i + 1: i + 5])
    question = query[12: i + 5]
    addrs = names.lookup(".".join(labels), domain)
    rd = flags & 0x0100
    if addrs is None:
        rcode, records = 3, []  # NXDOMAIN
    else:
        rcode = 0
        records = addrs if qtype == 1 and qclass == 1 else []
    head = struct.pack(">HHHHHH", qid, 0x8400 | rd | rcode, 1, len(records), 0, 0)
    body = b"".join(struct.pack(">HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(a) for a in records)
    return head + question + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="ADDRESS:PORT (UDP)")
    ap.add_argument("--api-server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--domain", default="cluster.local")
    a = ap.parse_args()
    with open(a.token_file) as f:
        names = Names(a.api_server, ssl.create_default_context(cafile=a.ca), f.read().strip())
    threading.Thread(target=names.refresh_forever, daemon=True).start()
    host, port = a.listen.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    print(f"dns: serving {a.domain} on {a.listen}/udp", flush=True)
    while True:
        query, peer = sock.recvfrom(512)
        try:
            reply = answer(query, names, a.domain)
        except Exception as e:  # a malformed query: no answer, never a dead server
            print(f"dns: {peer}: {e}", flush=True)
            reply = None
        if reply:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Kubernetes pod discovery for the lab's Prometheus over HTTP SD. Debian's prometheus package
is built without `kubernetes_sd_configs`; this serves what that discovery's `role: pod` would
give — one target per container port (`<pod IP>:<port>`), or the pod IP for a container
without ports — with the same `__meta_kubernetes_*` labels, so the relabelling the Prometheus
Operator derives from the PodMonitor applies unchanged. `GET /targets?namespace=NS` (repeatable)
limits the namespaces, as the discovery's `namespaces.names` does."""
import argparse
import http.server
import json
import re
import ssl
import urllib.parse
import urllib.request


def label(k):
    return re.sub(r"[^a-zA-Z0-9_]", "_", k)


def pod_targets(pod):
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    ip = status.get("podIP")
    if not ip:
        return []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    common = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_ready": "true" if ready else "false",
    }
    for k, v in (meta.get("labels") or {}).items():
        common[f"__meta_kubernetes_pod_label_{label(k)}"] = v
        common[f"__meta_kubernetes_pod_labelpresent_{label(k)}"] = "true"
    for k, v in (meta.get("annotations") or {}).items():
        common[f"__meta_kubernetes_pod_annotation_{label(k)}"] = v
        common[f"__meta_kubernetes_pod_annotationpresent_{label(k)}"] = "true"
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            common["__meta_kubernetes_pod_controller_kind"] = ref["kind"]
            common["__meta_kubernetes_pod_controller_name"] = ref["name"]
    out = []
    for c in spec.get("containers", []):
        base = dict(common, __meta_kubernetes_pod_container_name=c["name"],
                    __meta_kubernetes_pod_container_image=c.get("image", ""),
                    __meta_kubernetes_pod_container_init="false")
        ports = c.get("ports") or []
        if not ports:
            out.append({"targets": [ip], "labels": base})
        for p in ports:
            labels = dict(base, __meta_kubernetes_pod_container_port_name=p.get("name", ""),
                          __meta_kubernetes_pod_container_port_number=str(p["containerPort"]),
                          __meta_kubernetes_pod_container_port_protocol=p.get("protocol", "TCP"))
            out.append({"targets": [f"{ip}:{p['containerPort']}"], "labels": labels})
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/targets":
            self.send_error(404)
            return
        namespaces = urllib.parse.parse_qs(url.query).get("namespace", [])
        req = urllib.request.Request(f"{self.server.api}/api/v1/pods",
                                     headers={"Authorization": f"Bearer {self.server.token}"})
        try:
            with urllib.request.urlopen(req, context=self.server.tls, timeout=10) as r:
                pods = json.load(r)["items"]
        except Exception as e:  # the API down: Prometheus keeps its last targets
            self.send_error(502, str(e)[:200])
            return
        groups = []
        for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
            if namespaces and pod["metadata"]["namespace"] not in namespaces:
                continue
            groups.extend(pod_targets(pod))
        body = json.dumps(groups).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--api-server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token-file", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.api = a.api_server
    server.tls = ssl.create_default_context(cafile=a.ca)
    with open(a.token_file) as f:
        server.token = f.read().strip()
    server.serve_forever()


if __name__ == "__main__":
    main()

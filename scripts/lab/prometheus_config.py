#!/usr/bin/env python3
"""Writes the lab Prometheus's configuration from what stalewatch ships, so nothing is written
twice: the scrape jobs come from deploy/base/podmonitor.yaml, translated the way the Prometheus
Operator translates a PodMonitor (pod discovery in its namespaces — served by pod_sd.py, as
Debian's prometheus lacks Kubernetes discovery —, keep by selector labels and
port name, the standard namespace/pod/container/endpoint target labels, job from jobLabel,
then the PodMonitor's own relabelings), and the rules are deploy/base/prometheusrule.yaml's
spec. The lab's two rewrites, both to make a test take seconds: a 5 s scrape interval, and
every rule's `for:` capped at --max-for (docs/lab-cluster.md)."""
import argparse
import os
import re

import yaml


def label_name(k):
    return re.sub(r"[^a-zA-Z0-9_]", "_", k)


def seconds(d):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = 0.0
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w)", d):
        total += int(n) * units[u]
    return total


def relabel(r):
    """A PodMonitor RelabelConfig (camelCase) as Prometheus's relabel_config."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label", "separator": "separator",
            "regex": "regex", "modulus": "modulus", "replacement": "replacement", "action": "action"}
    return {keys[k]: v for k, v in r.items() if k in keys}


def scrape_jobs(pm, sd_url, interval):
    meta, spec = pm["metadata"], pm["spec"]
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [meta["namespace"]]
    jobs = []
    for i, ep in enumerate(spec["podMetricsEndpoints"]):
        rel = []
        for k, v in sorted(spec["selector"].get("matchLabels", {}).items()):
            ln = label_name(k)
            rel.append({"action": "keep", "source_labels": [f"__meta_kubernetes_pod_label_{ln}",
                                                            f"__meta_kubernetes_pod_labelpresent_{ln}"],
                        "regex": f"({re.escape(v)});true"})
        rel.append({"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": ep["port"]})
        for meta_label, target in [("namespace", "namespace"), ("pod_container_name", "container"),
                                   ("pod_name", "pod")]:
            rel.append({"source_labels": [f"__meta_kubernetes_{meta_label}"], "target_label": target})
        rel.append({"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"})
        if spec.get("jobLabel"):
            rel.append({"source_labels": [f"__meta_kubernetes_pod_label_{label_name(spec['jobLabel'])}"],
                        "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        rel.append({"target_label": "endpoint", "replacement": ep["port"]})
        rel.extend(relabel(r) for r in ep.get("relabelings", []))
        jobs.append({
            "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}",
            "honor_labels": bool(ep.get("honorLabels", False)),
            "scrape_interval": interval,
            "metrics_path": ep.get("path", "/metrics"),
            # Debian's prometheus has no kubernetes_sd_configs: pod_sd.py serves the same
            # targets and __meta_kubernetes_* labels that `role: pod` would.
            "http_sd_configs": [{
                "url": sd_url + "?" + "&".join(f"namespace={n}" for n in namespaces),
                "refresh_interval": interval,
            }],
            "relabel_configs": rel,
        })
    return jobs


def rules(rule_doc, max_for):
    groups = rule_doc["spec"]["groups"]
    for g in groups:
        for r in g.get("rules", []):
            if "for" in r and seconds(r["for"]) > max_for:
                r["for"] = f"{max_for}s"
    return {"groups": groups}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--podmonitor", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pod-sd", required=True, help="pod_sd.py's /targets URL")
    ap.add_argument("--alertmanager", required=True)
    ap.add_argument("--interval", default="5s")
    ap.add_argument("--max-for", type=int, default=10)
    a = ap.parse_args()
    with open(a.podmonitor) as f:
        pm = yaml.safe_load(f)
    with open(a.rules) as f:
        rule_doc = yaml.safe_load(f)
    config = {
        "global": {"scrape_interval": a.interval, "evaluation_interval": a.interval},
        "rule_files": [os.path.join(a.out, "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [a.alertmanager]}]}]},
        "scrape_configs": scrape_jobs(pm, a.pod_sd, a.interval),
    }
    with open(os.path.join(a.out, "rules.yaml"), "w") as f:
        yaml.safe_dump(rules(rule_doc, a.max_for), f, sort_keys=False)
    with open(os.path.join(a.out, "prometheus.yml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


if __name__ == "__main__":
    main()

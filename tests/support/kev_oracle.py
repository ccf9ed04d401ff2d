#!/usr/bin/env python3
"""The independent oracle for known-exploited findings on a dpkg root.

Usage: kev_oracle.py ROOT ECOSYSTEM OSV_ZIP KEV_JSON

What is installed comes from dpkg-query (the real tool), which OSV records affect it from the
records' own JSON with versions compared by `dpkg --compare-versions`, and a finding is
known-exploited iff one of its record's CVE ids (id, aliases, upstream, related) is in the
catalog. Prints a JSON list of [advisory id, binary package, [KEV CVE ids]], sorted.
"""
import json, subprocess, sys, zipfile

root, ecosystem, osv_zip, kev_json = sys.argv[1:5]
kev = {v["cveID"] for v in json.load(open(kev_json))["vulnerabilities"]}
rows = subprocess.run(
    ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
     "-f", "${db:Status-Status} ${Package} ${source:Package} ${source:Version}\n"],
    check=True, capture_output=True, text=True).stdout.split("\n")
installed = {}  # source name -> [(binary, source version)]
for r in rows:
    f = r.split()
    if len(f) == 4 and f[0] == "installed":
        installed.setdefault(f[2], []).append((f[1], f[3]))


def cmp(a, op, b):
    return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


def affected(version, entry):
    if version in entry.get("versions", []):
        return True
    for rng in entry.get("ranges", []):
        if rng.get("type") != "ECOSYSTEM":
            continue
        start = None
        for e in rng.get("events", []):
            if "introduced" in e:
                start = e["introduced"]
            elif start is not None and ("fixed" in e or "last_affected" in e):
                after = start == "0" or cmp(version, "ge", start)
                if after and ("fixed" in e and cmp(version, "lt", e["fixed"])
                              or "last_affected" in e and cmp(version, "le", e["last_affected"])):
                    return True
                start = None
        if start is not None and (start == "0" or cmp(version, "ge", start)):
            return True
    return False


out = set()
with zipfile.ZipFile(osv_zip) as z:
    for name in z.namelist():
        rec = json.loads(z.read(name))
        if rec.get("withdrawn"):
            continue
        ids = [rec["id"]] + rec.get("aliases", []) + rec.get("upstream", []) + rec.get("related", [])
        hit = sorted({i for i in ids if i.startswith("CVE-")} & kev)
        if not hit:
            continue
        for entry in rec.get("affected", []):
            pkg = entry.get("package", {})
            if pkg.get("ecosystem") != ecosystem:
                continue
            for binary, version in installed.get(pkg.get("name"), []):
                if affected(version, entry):
                    out.add((rec["id"], binary, tuple(hit)))
print(json.dumps(sorted([i, b, list(h)] for i, b, h in out)))

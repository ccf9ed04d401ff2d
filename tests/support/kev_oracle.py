#!/usr/bin/env python3
"""The independent oracle for known-exploited findings on a dpkg or rpm root.

Usage: kev_oracle.py ROOT ECOSYSTEM OSV_ZIP KEV_JSON

What is installed comes from the real tools (dpkg-query; rpm -qa on the root's database),
which OSV records affect it from the records' own JSON with versions compared by the real
tools (`dpkg --compare-versions`; rpm's own rpm.vercmp, epoch included), and a finding is
known-exploited iff one of its record's CVE ids (id, aliases, upstream, related) is in the
catalog. Prints a JSON list of [advisory id, binary package, [KEV CVE ids]], sorted.
"""
import json, os, subprocess, sys, zipfile

root, ecosystem, osv_zip, kev_json = sys.argv[1:5]
kev = {v["cveID"] for v in json.load(open(kev_json))["vulnerabilities"]}
RPM = os.path.isdir(f"{root}/var/lib/rpm")
installed = {}  # the name records use -> [(binary, version)]
if RPM:
    # Red Hat-family feeds name binary packages, with epoch:version-release.
    rows = subprocess.run(
        ["rpm", "--dbpath", f"{root}/var/lib/rpm", "-qa", "--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\n"],
        check=True, capture_output=True, text=True).stdout.split("\n")
    for r in rows:
        f = r.split()
        if len(f) == 2:
            installed.setdefault(f[0], []).append((f[0], f[1]))
else:
    # Debian's feed names source packages.
    rows = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
         "-f", "${db:Status-Status} ${Package} ${source:Package} ${source:Version}\n"],
        check=True, capture_output=True, text=True).stdout.split("\n")
    for r in rows:
        f = r.split()
        if len(f) == 4 and f[0] == "installed":
            installed.setdefault(f[2], []).append((f[1], f[3]))


def rpm_cmp(a, b):
    if ":" not in b:
        b = "0:" + b
    lua = '%{lua: print(rpm.vercmp("' + a + '", "' + b + '"))}'
    return int(subprocess.run(["rpm", "--eval", lua], check=True, capture_output=True, text=True).stdout)


def cmp(a, op, b):
    if RPM:
        c = rpm_cmp(a, b)
        return {"lt": c < 0, "le": c <= 0, "ge": c >= 0}[op]
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

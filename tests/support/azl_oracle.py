#!/usr/bin/env python3
"""The independent oracle for Azure Linux findings on an rpm root.

Usage: azl_oracle.py ROOT ECOSYSTEM OSV_ZIP

The feed's rule, as Microsoft's OVAL states it and Trivy's Azure Linux detector applies it:
a record names a *source* rpm; an installed binary package is affected when its source rpm
has that name and the source's version-release is lower than the fixed one. What is
installed comes from the real rpm (`rpm -qa` on the root's database: NAME and SOURCERPM),
versions are compared by rpm's own rpm.vercmp (through `rpm --eval` and its Lua). Prints a
JSON list of [advisory id, binary package, severity (lowercase)], sorted.
"""
import json, subprocess, sys, zipfile

root, ecosystem, osv_zip = sys.argv[1:4]
rows = subprocess.run(
    ["rpm", "--dbpath", f"{root}/var/lib/rpm", "-qa", "--qf", "%{NAME} %{SOURCERPM}\n"],
    check=True, capture_output=True, text=True).stdout.split("\n")
by_source = {}  # source name -> [(binary, source version-release)]
for r in rows:
    f = r.split()
    if len(f) != 2:
        continue
    src = f[1].removesuffix(".src.rpm")
    rest, rel = src.rsplit("-", 1)
    name, ver = rest.rsplit("-", 1)
    by_source.setdefault(name, []).append((f[0], f"{ver}-{rel}"))

candidates = []  # (id, binary, installed, fixed, severity)
with zipfile.ZipFile(osv_zip) as z:
    for n in z.namelist():
        rec = json.loads(z.read(n))
        sev = (rec.get("database_specific") or {}).get("severity", "unknown").lower()
        for a in rec.get("affected", []):
            pkg = a.get("package", {})
            if pkg.get("ecosystem") != ecosystem or pkg.get("name") not in by_source:
                continue
            for rng in a.get("ranges", []):
                fixed = [e["fixed"] for e in rng.get("events", []) if "fixed" in e]
                for binary, installed in by_source[pkg["name"]]:
                    for f in fixed:
                        candidates.append((rec["id"], binary, installed, f, sev))

# One rpm process compares them all.
lua = "".join(f'print(rpm.vercmp("{c[2]}", "{c[3]}"), " ")\n' for c in candidates)
out = subprocess.run(["rpm", "--eval", "%{lua:" + lua + "}"], check=True, capture_output=True,
                     text=True).stdout.split()
hits = sorted({(c[0], c[1], c[4]) for c, cmp in zip(candidates, out) if int(cmp) < 0})
print(json.dumps([list(h) for h in hits]))

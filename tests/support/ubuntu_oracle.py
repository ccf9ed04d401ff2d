#!/usr/bin/env python3
"""The independent oracle for Ubuntu findings on a dpkg root.

Usage: ubuntu_oracle.py ROOT ECOSYSTEM OSV_ZIP

Canonical's records name source packages, with a release stream (`Ubuntu:22.04:LTS`) and,
after standard support, Ubuntu Pro streams (`Ubuntu:Pro:18.04:LTS`, the FIPS ones). What is
installed comes from dpkg itself (`dpkg-query --admindir`), versions are compared by `dpkg
--compare-versions`. A package installed from Pro (a `+esm` version) is judged by the Pro
stream; any other by its release's stream, and by the Pro stream for what the release's has
no record of — whose fix then requires Ubuntu Pro. A record with no fixed event leaves every
listed version affected and unfixed. Prints a JSON list of [id, binary, fixed version or null,
fix requirement or null], sorted.
"""
import json, subprocess, sys, zipfile

root, ecosystem, osv_zip = sys.argv[1:4]
release = ecosystem.removeprefix("Ubuntu:")
pro = f"Ubuntu:Pro:{release}"
rows = subprocess.run(
    ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
     "${Package} ${Version} ${source:Package} ${source:Version}\n"],
    check=True, capture_output=True, text=True).stdout.split("\n")

def lt(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0

records = {}
with zipfile.ZipFile(osv_zip) as z:
    for n in z.namelist():
        rec = json.loads(z.read(n))
        for a in rec.get("affected", []):
            records.setdefault((a["package"]["ecosystem"], a["package"]["name"]), []).append((rec["id"], a))

def hits(stream, source, version):
    out = {}
    for rid, a in records.get((stream, source), []):
        affected = version in a.get("versions", [])
        fixed = None
        for r in a.get("ranges", []):
            if r.get("type") != "ECOSYSTEM":
                continue
            intro = [e["introduced"] for e in r["events"] if "introduced" in e]
            fixes = [e["fixed"] for e in r["events"] if "fixed" in e]
            if intro and (intro[0] == "0" or not lt(version, intro[0])):
                if not fixes:
                    affected = True
                elif lt(version, fixes[0]):
                    affected, fixed = True, fixes[0]
        if affected:
            out[rid] = fixed
    return out

result = set()
for r in rows:
    f = r.split()
    if len(f) != 4:
        continue
    binary, _, source, sversion = f
    if "+esm" in sversion:
        for rid, fixed in hits(pro, source, sversion).items():
            result.add((rid, binary, fixed, None))
        continue
    own = hits(ecosystem, source, sversion)
    for rid, fixed in own.items():
        result.add((rid, binary, fixed, None))
    for rid, fixed in hits(pro, source, sversion).items():
        if rid not in own:
            result.add((rid, binary, fixed, "ubuntu-pro" if fixed else None))
print(json.dumps(sorted([list(x) for x in result], key=lambda x: (x[0], x[1]))))

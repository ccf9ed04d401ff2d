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
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dpkg_osv  # noqa: E402

root, ecosystem, osv_zip = sys.argv[1:4]
release = ecosystem.removeprefix("Ubuntu:")
pro = f"Ubuntu:Pro:{release}"
rows = subprocess.run(
    ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
     "${Package} ${Version} ${source:Package} ${source:Version}\n"],
    check=True, capture_output=True, text=True).stdout.split("\n")

records = dpkg_osv.records(osv_zip, lambda eco: eco in (ecosystem, pro))


def hits(stream, source, version):
    out = {}
    for rid, a in records.get((stream, source), []):
        affected, fixed = dpkg_osv.judge(a, version)
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

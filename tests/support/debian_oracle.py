#!/usr/bin/env python3
"""The independent oracle for Debian findings on a dpkg root (the node scan's host root).

Usage: debian_oracle.py ROOT ECOSYSTEM OSV_ZIP

What is installed comes from dpkg itself (`dpkg-query --admindir`, status `installed` only);
Debian's records name source packages in a release stream (`Debian:12`); versions are
compared by `dpkg --compare-versions`. A package is affected by a record when its source
version is listed in `versions`, or lies in an ECOSYSTEM range (from `introduced`, before
`fixed` when there is one). Prints a JSON list of [id, binary package], sorted.
"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dpkg_osv import judge, records  # noqa: E402

root, ecosystem, osv_zip = sys.argv[1:4]
rows = subprocess.run(
    ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
     "${db:Status-Status} ${Package} ${source:Package} ${source:Version}\n"],
    check=True, capture_output=True, text=True).stdout.split("\n")
by_source = records(osv_zip, lambda eco: eco == ecosystem)

result = set()
for r in rows:
    f = r.split()
    if len(f) != 4 or f[0] != "installed":
        continue
    _, binary, source, sversion = f
    for rid, a in by_source.get((ecosystem, source), []):
        if judge(a, sversion)[0]:
            result.add((rid, binary))
print(json.dumps(sorted([list(x) for x in result])))

#!/usr/bin/env python3
"""Writes an Ubuntu root whose dpkg database holds real packages at real versions, both taken
from Canonical's OSV records (their `versions` lists and `binaries`).

Usage: ubuntu_root.py ROOT RELEASE OSV_ZIP   (RELEASE: 18.04, 22.04 or 24.04)

For each source package the release's streams (`Ubuntu:<R>:LTS`, `Ubuntu:Pro:<R>:LTS`) name,
in record order, one or two of its binaries at one version from a record's list of affected
versions: alternately a version from the release's own stream and one from its Pro stream
(`+esm`), so that both kinds are installed where the records have both.
"""
import json, os, sys, zipfile

root, release, osv_zip = sys.argv[1:4]
codename = {"18.04": "bionic", "22.04": "jammy", "24.04": "noble"}[release]
streams = [f"Ubuntu:{release}:LTS", f"Ubuntu:Pro:{release}:LTS"]

def binaries(affected):
    out = []
    for item in (affected.get("ecosystem_specific") or {}).get("binaries", []):
        if "binary_name" in item:
            out.append(item["binary_name"])
        else:
            out.extend(item.keys())
    return [b for b in out if not b.endswith(("-dbgsym", "-dbg", "-doc", "-dev"))][:2]

chosen = {}  # source -> (version, [binaries])
with zipfile.ZipFile(osv_zip) as z:
    for n in sorted(z.namelist()):
        rec = json.loads(z.read(n))
        for a in rec.get("affected", []):
            eco, src = a["package"]["ecosystem"], a["package"]["name"]
            if eco not in streams or src in chosen or not a.get("versions"):
                continue
            want_esm = eco.startswith("Ubuntu:Pro:") and len(chosen) % 2 == 1
            versions = [v for v in a["versions"] if ("+esm" in v) == want_esm] or a["versions"]
            bins = binaries(a) or [src]
            chosen[src] = (versions[len(versions) // 2], bins)
os.makedirs(f"{root}/etc", exist_ok=True)
os.makedirs(f"{root}/var/lib/dpkg", exist_ok=True)
with open(f"{root}/etc/os-release", "w") as f:
    f.write(f'NAME="Ubuntu"\nVERSION="{release} LTS ({codename})"\nID=ubuntu\nVERSION_ID="{release}"\n'
            f'VERSION_CODENAME={codename}\nPRETTY_NAME="Ubuntu {release} LTS"\n')
stanzas = []
for src in sorted(chosen):
    version, bins = chosen[src]
    for b in sorted(set(bins)):
        s = [f"Package: {b}", "Status: install ok installed", "Priority: optional", "Architecture: amd64",
             "Maintainer: Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>"]
        if b != src:
            s.append(f"Source: {src}")
        s += [f"Version: {version}", "Description: fixture", ""]
        stanzas.append("\n".join(s))
with open(f"{root}/var/lib/dpkg/status", "w") as f:
    f.write("\n".join(stanzas))

"""Shared by the dpkg oracles (debian_oracle.py, ubuntu_oracle.py): versions compared by dpkg
itself, and the OSV rule for one affected entry — listed in `versions`, or inside an
ECOSYSTEM range from `introduced` up to `fixed` (every later version when there is none)."""
import functools, json, subprocess, zipfile


@functools.lru_cache(maxsize=None)
def lt(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def records(osv_zip, keep):
    """{(ecosystem, package name): [(id, affected entry)]} of the entries `keep(ecosystem)`
    accepts, withdrawn records left out."""
    out = {}
    with zipfile.ZipFile(osv_zip) as z:
        for n in z.namelist():
            rec = json.loads(z.read(n))
            if rec.get("withdrawn"):
                continue
            for a in rec.get("affected", []):
                eco = a["package"]["ecosystem"]
                if keep(eco):
                    out.setdefault((eco, a["package"]["name"]), []).append((rec["id"], a))
    return out


def judge(a, version):
    """(affected, fixed version or None) of `version` by one affected entry."""
    affected, fixed = version in a.get("versions", []), None
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
    return affected, fixed

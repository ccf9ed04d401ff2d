#!/usr/bin/env python3
"""Prints a readable summary of the agent's /v1/findings document (read from stdin)."""
import json
import sys

doc = json.load(sys.stdin)
db = doc["advisory_db"]
print(f"node {doc['node']}: advisory data refreshed {db['updated_at']} ({sum(db['records'].values())} records)")
for c in doc["containers"]:
    r = c.get("report") or {}
    os_ = r.get("os") or {}
    if os_.get("eol"):
        eol = f"END OF LIFE since {os_['eol_date']}"
    elif os_.get("eol_date"):
        eol = f"supported until {os_.get('eol_date')}"
    else:
        eol = "no published end of life"
    s = r.get("summary", {})
    by = s.get("by_severity", {})
    print(f"\n{c['namespace']}/{c['pod']}/{c['container']}  image {c['image']}  scan {c['scan_status']}")
    if c.get("error"):
        print(f"  error: {c['error']}")
    for g in c.get("coverage_gaps", []):
        print(f"  NOT MATCHED: {g['packages']} packages of {g['ecosystem']} ({g['reason']})")
    print(f"  OS {os_.get('id')} {os_.get('version_id')}, {eol}")
    counts = ", ".join(f"{by.get(k, 0)} {k}" for k in ("critical", "high", "medium", "low", "unknown"))
    print(f"  {s.get('findings', 0)} findings ({s.get('fixable', 0)} fixable): {counts}")
    # Most severe first: what an operator reads first.
    order = {k: i for i, k in enumerate(("critical", "high", "medium", "low", "unknown"))}
    findings = sorted(r.get("findings", []), key=lambda f: (order.get(f["severity"], 9), f["id"], f["package"]))
    for f in findings[:5]:
        fix = f["fixed_version"] or "(no fix)"
        pro = "  (Ubuntu Pro)" if f.get("fix_requires") else ""
        print(f"    {f['severity']:8} {f['id']:24} {f['package']:18} {f['installed_version']} -> {fix}{pro}")
    if len(findings) > 5:
        print(f"    ... {len(findings) - 5} more")

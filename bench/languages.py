#!/usr/bin/env python3
"""Language cataloging benchmark: stalewatch vs syft on the same large node_modules tree and
the same directory of jars, same run, same machine.

Builds the tree with the real npm (`npm install --ignore-scripts` of a set of big packages),
then runs each tool N times on it and reports the best wall time and peak RSS of each, and
their ratios. The scanners see the same directory: `stalewatch scan rootfs:DIR --format json`
and `syft dir:DIR -o json`.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

PACKAGES = ["webpack@5.94.0", "jest@29.7.0", "eslint@8.57.0", "typescript@5.4.5",
            "@babel/core@7.24.5", "@babel/preset-env@7.24.5", "react-scripts@5.0.1",
            "express@4.19.2", "lodash@4.17.21", "next@14.2.3"]


def measure(cmd, env=None):
    """(wall seconds, peak RSS MiB, stdout) of one run. GNU time measures the tool alone: a
    child forked from this (large) Python process would count the parent's pages it shared
    before exec."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as t:
        r = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name, *cmd], stdout=out,
                           stderr=subprocess.DEVNULL, env=env)
        if r.returncode not in (0, 1):
            raise SystemExit(f"{cmd[0]} failed: {r.returncode}")
        wall, kib = t.read().split()[-2:]
        out.seek(0)
        return float(wall), int(kib) / 1024, out.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stalewatch", default="target/release/stalewatch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", help="reuse/keep the trees in this directory")
    ap.add_argument("--jars", required=True, help="a directory of real jars (e.g. Debian's /usr/share/java, unpacked)")
    ap.add_argument("--jar-copies", type=int, default=20, help="copies of that directory in the jars tree")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="stalewatch-langbench-")
    root = os.path.join(work, "root")
    app = os.path.join(root, "srv/app")
    if not os.path.isdir(os.path.join(app, "node_modules")):
        os.makedirs(app, exist_ok=True)
        with open(os.path.join(app, "package.json"), "w") as f:
            json.dump({"name": "bench-app", "version": "1.0.0", "private": True}, f)
        subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--silent",
                        "--legacy-peer-deps", *PACKAGES], cwd=app, check=True)
    manifests = sum(1 for d, _, fs in os.walk(os.path.join(app, "node_modules")) for f in fs if f == "package.json")
    files = sum(len(fs) for _, _, fs in os.walk(root))
    jroot = os.path.join(work, "jars")
    if not os.path.isdir(jroot):
        for i in range(a.jar_copies):
            shutil.copytree(a.jars, os.path.join(jroot, f"opt/app{i}/lib"), symlinks=True)
    njars = sum(1 for d, _, fs in os.walk(jroot) for f in fs if f.endswith(".jar") and not os.path.islink(os.path.join(d, f)))
    jbytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(jroot) for f in fs if not os.path.islink(os.path.join(d, f)))
    db = os.path.join(work, "db")
    if not os.path.isdir(db):
        subprocess.run([a.stalewatch, "db", "update", "--advisory-source",
                        os.path.abspath(os.path.join(os.path.dirname(__file__), "../../shared/data/osv")),
                        "--db-dir", db, "--ecosystem", "npm", "--ecosystem", "Maven"], check=True, capture_output=True)
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    syft_version = subprocess.run(["syft", "version"], capture_output=True, text=True, env=env).stdout.split("\n")[1].split()[-1]
    for title, tree in [(f"a node_modules tree of {manifests} package.json files ({files} files in all)", root),
                        (f"{njars} jars ({jbytes / 2**20:.0f} MiB)", jroot)]:
        ours = [measure([a.stalewatch, "scan", f"rootfs:{tree}", "--db-dir", db, "--format", "json"]) for _ in range(a.runs)]
        theirs = [measure(["syft", f"dir:{tree}", "-o", "json", "-q"], env) for _ in range(a.runs)]
        n_ours = len(json.loads(ours[0][2])["packages"])
        n_theirs = len(json.loads(theirs[0][2])["artifacts"])
        t_o, t_t = min(r[0] for r in ours), min(r[0] for r in theirs)
        m_o, m_t = min(r[1] for r in ours), min(r[1] for r in theirs)
        print(f"\n## Language cataloging: {title}\n")
        print(f"| tool | wall time (best of {a.runs}) | peak RSS | packages |")
        print("|---|---:|---:|---:|")
        print(f"| stalewatch scan rootfs: (catalog and match) | {t_o:.3f} s | {m_o:.1f} MiB | {n_ours} |")
        print(f"| syft {syft_version} dir: (catalog only) | {t_t:.3f} s | {m_t:.1f} MiB | {n_theirs} |")
        print(f"| ratio syft / stalewatch | {t_t / t_o:.1f}× | {m_t / m_o:.1f}× | |")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

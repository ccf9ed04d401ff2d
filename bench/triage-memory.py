#!/usr/bin/env python3
"""What KEV and EPSS cost the agent in memory, measured in one run on a real private containerd:
N distinct Alpine images (the shared 3.20.3 minirootfs), one running container each, the agent
with the full shared OSV mirror — once without triage feeds (the baseline), once with CISA's
KEV catalog (the shared copy) and a full-size EPSS file (300,000 rows in FIRST's format, gzip;
real CVE id shapes, generated scores: no EPSS file is public data here). Steady RSS is read
after every container is scanned, the feeds are loaded and the agent settled; each
configuration runs twice, alternating, and the lower figure counts.

Usage: bench/triage-memory.py [--images 20] [--rows 300000]
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data. Run as root.
Goal (issue 14): + <= 4 MiB steady with KEV and a 300k-row EPSS file.
"""
import argparse, gzip, os, random, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent import Agent, proc_mem, alpine_node, sh, value  # noqa: E402  (the agent benchmark's harness)

SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def epss_file(path, rows):
    rnd = random.Random(7)
    with gzip.open(path, "wt") as f:
        f.write("#model_version:v2025.03.14,score_date:2025-08-24T00:00:00+0000\ncve,epss,percentile\n")
        seen = set()
        while len(seen) < rows:
            cve = f"CVE-{rnd.randrange(1999, 2026)}-{rnd.randrange(1, 60000):04d}"
            if cve in seen:
                continue
            seen.add(cve)
            f.write(f"{cve},{rnd.random():.5f},{rnd.random():.5f}\n")


def run(lab, work, mirror, images, extra, name):
    state = os.path.join(work, f"state-{name}")
    agent = Agent(lab.sock, state, mirror, ["Alpine"], extra)
    try:
        agent.wait(lambda m: value(m, "stalewatch_container_scan_status", status="ok") == images, 600, "all scanned")
        if extra:
            agent.wait(lambda m: value(m, "stalewatch_epss_scores_timestamp_seconds") is not None
                       and value(m, "stalewatch_kev_catalog_timestamp_seconds") is not None, 120, "feeds loaded")
        time.sleep(8)
        _, steady = proc_mem(agent.proc.pid)
        return steady
    finally:
        agent.stop()
        shutil.rmtree(state, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--rows", type=int, default=300000)
    a = ap.parse_args()
    # As the DaemonSet runs it (deploy/base/daemonset.yaml).
    os.environ["MALLOC_ARENA_MAX"] = "2"
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    with alpine_node("stalewatch-triage-bench-", a.images) as (work, lab):
        mirror = os.path.join(work, "mirror")
        os.makedirs(os.path.join(mirror, "Alpine"))
        os.symlink(os.path.join(SHARED, "osv/Alpine/all.zip"), os.path.join(mirror, "Alpine/all.zip"))
        epss = os.path.join(work, "epss.csv.gz")
        epss_file(epss, a.rows)
        feeds = ["--kev-source", os.path.join(SHARED, "kev/known_exploited_vulnerabilities.json"), "--epss-source", epss]
        base, with_feeds = [], []
        for round_ in range(2):
            base.append(run(lab, work, mirror, a.images, [], f"base{round_}"))
            with_feeds.append(run(lab, work, mirror, a.images, feeds, f"feeds{round_}"))
        b, f = min(base), min(with_feeds)
        print(f"images: {a.images}, EPSS rows: {a.rows}, EPSS file: {os.path.getsize(epss) / 2**20:.1f} MiB gzip")
        print(f"steady RSS without feeds: {b:.1f} MiB (runs: {', '.join(f'{x:.1f}' for x in base)})")
        print(f"steady RSS with KEV + EPSS: {f:.1f} MiB (runs: {', '.join(f'{x:.1f}' for x in with_feeds)})")
        print(f"cost: {f - b:+.1f} MiB (goal <= +4 MiB): {'PASS' if f - b <= 4 else 'FAIL'}")

if __name__ == "__main__":
    main()

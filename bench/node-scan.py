#!/usr/bin/env python3
"""What the node scan costs the agent in memory, measured in one run on a real private
containerd: N distinct Alpine images (the shared 3.20.3 minirootfs), one running container
each, the agent with the shared OSV mirror's Alpine, Debian and Go feeds — once with
`--node-scan off` (the baseline), once with `--node-scan on --host-root /`: this machine, a real
Debian 12 host (~800 dpkg packages, its runtime binaries). Both configurations load the same
feeds, so the difference is the node scan alone: the host's inventory, its report, the kernel
and the Node facts. Peak (VmHWM) and steady (VmRSS after every container is scanned, the node
matched and the agent settled) are read; each configuration runs twice, alternating, and the
lower figures count. As the DaemonSet runs it: MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072.

Usage: bench/node-scan.py [--images 20]
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data. Run as root.
Goal (issue 28): + <= 4 MiB steady with the node scan on.
"""
import argparse, os, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent import Agent, proc_mem, alpine_node, value  # noqa: E402  (the agent benchmark's harness)

SHARED = os.path.join(HERE, "..", "..", "shared", "data")
FEEDS = ["Alpine", "Debian", "Go"]


def run(lab, work, mirror, images, extra, name):
    state = os.path.join(work, f"state-{name}")
    agent = Agent(lab.sock, state, mirror, FEEDS, extra)
    try:
        agent.wait(lambda m: value(m, "stalewatch_container_scan_status", status="ok") == images, 600, "all scanned")
        if "on" in extra:
            agent.wait(lambda m: value(m, "stalewatch_node_scan_status", status="ok") == 1, 300, "node matched")
            m = agent.wait(lambda m: True, 10, "metrics")
            packages = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n"], capture_output=True, text=True).stdout
            found = value(m, "stalewatch_node_vulnerabilities") or 0
            print(f"  node: {packages.count('ii ')} installed dpkg packages, {found:.0f} distinct vulnerabilities")
        time.sleep(8)
        return proc_mem(agent.proc.pid)
    finally:
        agent.stop()
        shutil.rmtree(state, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    a = ap.parse_args()
    os.environ["MALLOC_ARENA_MAX"] = "2"
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    with alpine_node("stalewatch-node-bench-", a.images) as (work, lab):
        mirror = os.path.join(work, "mirror")
        for eco in FEEDS:
            os.makedirs(os.path.join(mirror, eco))
            os.symlink(os.path.join(SHARED, "osv", eco, "all.zip"), os.path.join(mirror, eco, "all.zip"))
        off, on = [], []
        for round_ in range(2):
            off.append(run(lab, work, mirror, a.images, ["--node-scan", "off"], f"off{round_}"))
            on.append(run(lab, work, mirror, a.images, ["--node-scan", "on", "--host-root", "/"], f"on{round_}"))
        runs = lambda xs, i: ", ".join(f"{x[i]:.1f}" for x in xs)
        (p_off, s_off), (p_on, s_on) = min(off, key=lambda x: x[1]), min(on, key=lambda x: x[1])
        print(f"images: {a.images}, feeds: {', '.join(FEEDS)}")
        print(f"node scan off: steady {s_off:.1f} MiB, peak {p_off:.1f} MiB (steady runs: {runs(off, 1)}; peaks: {runs(off, 0)})")
        print(f"node scan on:  steady {s_on:.1f} MiB, peak {p_on:.1f} MiB (steady runs: {runs(on, 1)}; peaks: {runs(on, 0)})")
        print(f"cost: steady {s_on - s_off:+.1f} MiB (goal <= +4 MiB): {'PASS' if s_on - s_off <= 4 else 'FAIL'}; peak {p_on - p_off:+.1f} MiB")


if __name__ == "__main__":
    main()

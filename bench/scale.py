#!/usr/bin/env python3
"""Scale on a real private containerd (issue 15 §3): C running containers on I distinct images
(the shared Alpine 3.20.3 minirootfs, one file apart: one shared base layer), the agent with
the shared Alpine OSV data. Measures: time from the agent's start until every container is
exported, the agent's peak and steady RSS, and the scrape: size (plain and gzip) and duration
(median and max of 50 scrapes, each a fresh connection).

Then the oracle: the containers exported are exactly the tasks containerd runs.

Usage: bench/scale.py [--containers 250] [--images 60]
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data. Run as root.
"""
import argparse, gzip, os, re, shutil, statistics, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent import Agent, alpine_node, proc_mem, value  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def exported(text):
    return set(re.findall(r'^stalewatch_container_scan_status\{[^}]*pod="([^"]+)"[^}]*status="ok"[^}]*\} 1', text, re.M))


def scrape(port, gz):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"} if gz else {})
    t = time.perf_counter()
    body = urllib.request.urlopen(req, timeout=10).read()
    return time.perf_counter() - t, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=250)
    ap.add_argument("--images", type=int, default=60)
    a = ap.parse_args()
    with alpine_node("scale-", a.images) as (work, lab):
        # alpine_node runs one container per image (c0..c<images-1>); the rest share them.
        for i in range(a.images, a.containers):
            lab.run(f"c{i}", f"bench.example/img:img{i % a.images}")
        running = {l.split()[0] for l in lab.ctr("tasks", "ls").splitlines()[1:] if l.split()[-1:] == ["RUNNING"]}
        mirror = os.path.join(work, "mirror")
        os.makedirs(os.path.join(mirror, "Alpine"))
        shutil.copy(os.path.join(SHARED, "osv/Alpine/all.zip"), os.path.join(mirror, "Alpine", "all.zip"))
        started = time.time()
        agent = Agent(lab.sock, os.path.join(work, "state"), mirror, ["Alpine"])
        m = agent.wait(lambda m: len(exported(m)) >= len(running), 900, "every container exported")
        took = time.time() - started
        time.sleep(20)
        hwm, rss = proc_mem(agent.proc.pid)
        plain = [scrape(agent.port, False) for _ in range(50)]
        zipped = [scrape(agent.port, True) for _ in range(50)]
        m = plain[-1][1].decode()
        got = exported(m)
        series = sum(1 for l in m.splitlines() if l and not l.startswith("#"))
        layers = value(m, "stalewatch_layers_read_total")
        agent.stop()
    ms = lambda xs: (1000 * statistics.median(x[0] for x in xs), 1000 * max(x[0] for x in xs))
    print(f"| containers (images) | {len(running)} ({a.images}) |")
    print(f"| all exported after the agent's start | {took:.1f} s |")
    print(f"| agent RSS: peak / steady | {hwm:.1f} / {rss:.1f} MiB |")
    print(f"| series | {series} |")
    print(f"| layers read (cold, no cache) | {layers:.0f} |")
    print(f"| scrape size: plain / gzip | {len(plain[-1][1]) / 1024:.1f} / {len(zipped[-1][1]) / 1024:.1f} KiB |")
    print(f"| scrape time plain: median / max of 50 | {ms(plain)[0]:.2f} / {ms(plain)[1]:.2f} ms |")
    print(f"| scrape time gzip: median / max of 50 | {ms(zipped)[0]:.2f} / {ms(zipped)[1]:.2f} ms |")
    assert gzip.decompress(zipped[-1][1]).decode().count("stalewatch_container_scan_status{") >= len(running)
    missing, extra = sorted(running - got), sorted(got - running)
    print(f"oracle: containerd runs {len(running)}, exported {len(got)}; missing {missing[:5]}, extra {extra[:5]}")
    sys.exit(0 if not missing and not extra else 1)


if __name__ == "__main__":
    main()

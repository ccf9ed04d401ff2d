#!/usr/bin/env python3
"""Scale on a real private containerd (issue 15 §3): C running containers on I distinct images
(the shared Alpine 3.20.3 minirootfs, one file apart: one shared base layer), the agent with
the shared Alpine OSV data. Measures: time from the agent's start until every container is
exported, the agent's peak and steady RSS, and the scrape: size (plain and gzip) and duration
(median and max of 50 scrapes, each a fresh connection).

Then the oracle: the containers exported are exactly the tasks containerd runs. With
--compare, the baseline binary is measured first on the same node, cold as well.

Usage: bench/scale.py [--containers 250] [--images 60] [--compare BASELINE_BINARY]
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data. Run as root.
"""
import argparse, gzip, os, re, shutil, statistics, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agent as harness  # noqa: E402
from agent import BIN, Agent, alpine_node, proc_mem, value  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def exported(text):
    return set(re.findall(r'^stalewatch_container_scan_status\{[^}]*pod="([^"]+)"[^}]*status="ok"[^}]*\} 1', text, re.M))


def scrape(port, gz):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"} if gz else {})
    t = time.perf_counter()
    body = urllib.request.urlopen(req, timeout=10).read()
    return time.perf_counter() - t, body


def measure(lab, work, binary, running, label):
    """One agent run of `binary` on the node, cold (a fresh state directory): its figures."""
    harness.BIN = binary
    mirror = os.path.join(work, "mirror")
    if not os.path.isdir(mirror):
        os.makedirs(os.path.join(mirror, "Alpine"))
        shutil.copy(os.path.join(SHARED, "osv/Alpine/all.zip"), os.path.join(mirror, "Alpine", "all.zip"))
    state = os.path.join(work, f"state-{len(os.listdir(work))}")
    started = time.time()
    agent = Agent(lab.sock, state, mirror, ["Alpine"])
    agent.wait(lambda m: len(exported(m)) >= len(running), 900, f"every container exported ({label})")
    took = time.time() - started
    time.sleep(20)
    hwm, rss = proc_mem(agent.proc.pid)
    plain = [scrape(agent.port, False) for _ in range(50)]
    zipped = [scrape(agent.port, True) for _ in range(50)]
    m = plain[-1][1].decode()
    agent.stop()
    ms = lambda xs: (1000 * statistics.median(x[0] for x in xs), 1000 * max(x[0] for x in xs))
    gz = zipped[-1][1]
    if gz[:2] == b"\x1f\x8b":
        assert gzip.decompress(gz).decode().count("stalewatch_container_scan_status{") >= len(running)
    return {
        "all exported after the agent's start": f"{took:.1f} s",
        "agent RSS: peak / steady": f"{hwm:.1f} / {rss:.1f} MiB",
        "series": str(sum(1 for l in m.splitlines() if l and not l.startswith("#"))),
        "layers read (cold, no cache)": f"{value(m, 'stalewatch_layers_read_total'):.0f}",
        "scrape size: plain / with Accept-Encoding: gzip": f"{len(plain[-1][1]) / 1024:.1f} / {len(gz) / 1024:.1f} KiB",
        "scrape time plain: median / max of 50": "{:.2f} / {:.2f} ms".format(*ms(plain)),
        "scrape time gzip: median / max of 50": "{:.2f} / {:.2f} ms".format(*ms(zipped)),
    }, exported(m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=250)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--compare", help="another stalewatch binary (the baseline), measured first on the same node")
    a = ap.parse_args()
    runs = ([("baseline", a.compare)] if a.compare else []) + [("this build", BIN)]
    results, ok = [], True
    with alpine_node("scale-", a.images) as (work, lab):
        # alpine_node runs one container per image (c0..c<images-1>); the rest share them.
        for i in range(a.images, a.containers):
            lab.run(f"c{i}", f"bench.example/img:img{i % a.images}")
        running = {l.split()[0] for l in lab.ctr("tasks", "ls").splitlines()[1:] if l.split()[-1:] == ["RUNNING"]}
        for label, binary in runs:
            figures, got = measure(lab, work, binary, running, label)
            results.append((label, figures))
            missing, extra = sorted(running - got), sorted(got - running)
            print(f"{label}: oracle: containerd runs {len(running)}, exported {len(got)}; "
                  f"missing {missing[:5]}, extra {extra[:5]}", flush=True)
            ok &= not missing and not extra
    print(f"| {len(running)} containers on {a.images} images | " + " | ".join(l for l, _ in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in results[0][1]:
        print(f"| {key} | " + " | ".join(f[key] for _, f in results) + " |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

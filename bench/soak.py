#!/usr/bin/env python3
"""Churn soak on a real private containerd (issue 15 §3): ~100 containers stay running (distinct
images of the shared Alpine 3.20.3 minirootfs sharing their base layer) while >= 1000 other
containers are created, started, stopped and deleted (a few alive at a time, on the same
images and on Alpine 3.16.9 and 3.12.12), and the advisory mirror changes every few minutes.

Every few seconds: agent RSS, open file descriptors, threads, exported series, and the
containers containerd runs vs the containers the agent exports, into a CSV (and a PNG when
matplotlib is installed). At the end, after one reconcile interval: no series for a deleted
container, none missing for a running one (containerd's own task list is the oracle), and,
after warm-up (the first fifth of the cycles), RSS and FDs within 10 %: the median of the last
quarter of the samples against the first quarter's. The agent's allocator is set as the
DaemonSet sets it (MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072).

Usage: bench/soak.py [--cycles 1000] [--running 100] [--update-every 180] [--out docs/soak]
       bench/soak.py --plot-only docs/soak.csv   (Debian's python3-matplotlib: /usr/bin/python3)
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data. Run as root.
"""
import argparse, csv, os, random, re, shutil, statistics, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent import Agent, alpine_node, metrics, sh  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def updated_zip(src, dst, n):
    """The mirror's zip plus `n` extra records: an update the agent's refresh sees."""
    import json, zipfile
    tmp = dst + ".new"
    shutil.copy(src, tmp)
    with zipfile.ZipFile(tmp, "a") as z:
        for k in range(n):
            z.writestr(f"ALPINE-SOAK-{k}.json", json.dumps({
                "id": f"ALPINE-SOAK-{k}", "modified": "2026-12-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Alpine:v3.20", "name": "busybox"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{99 + k}.0-r0"}]}]}]}))
    os.replace(tmp, dst)


def import_release(lab, work, version, tag):
    """An Alpine release's minirootfs as bench.example/<tag>:latest."""
    root = os.path.join(work, f"rootfs-{tag}")
    os.makedirs(root)
    sh("tar", "-xzf", os.path.join(SHARED, f"rootfs/alpine/alpine-minirootfs-{version}-x86_64.tar.gz"), "-C", root)
    layout = os.path.join(work, f"layout-{tag}")
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:latest")
    sh("umoci", "insert", "--image", f"{layout}:latest", root, "/")
    archive = os.path.join(work, f"{tag}.tar")
    sh("tar", "-C", layout, "-cf", archive, ".")
    lab.ctr("images", "import", "--base-name", f"bench.example/{tag}", archive)
    return f"bench.example/{tag}:latest"


def running_tasks(lab):
    """Pod names of containerd's running tasks (each bench container's pod is its id)."""
    out = lab.ctr("tasks", "ls")
    return {l.split()[0] for l in out.splitlines()[1:] if l.split() and l.split()[-1] == "RUNNING"}


def exported_pods(text):
    return set(re.findall(r'^stalewatch_container_scan_status\{[^}]*pod="([^"]+)"[^}]*status="ok"[^}]*\} 1', text, re.M))


def sample(agent, started, cycles_done):
    pid = agent.proc.pid
    status = open(f"/proc/{pid}/status").read()
    kib = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))
    m = metrics(agent.port)
    series = sum(1 for l in m.splitlines() if l and not l.startswith("#"))
    return {"seconds": round(time.time() - started, 1), "cycles": cycles_done[0],
            "rss_mib": round(kib("VmRSS") / 1024, 2), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": kib("Threads"), "series": series, "containers_exported": len(exported_pods(m))}


def churn(lab, images, cycles, alive, done, stop):
    """`cycles` create/start/stop/delete cycles, `alive` churn containers at a time."""
    live = []
    for i in range(cycles):
        if stop.is_set():
            return
        cid = f"churn{i}"
        lab.ctr("run", "-d", "--null-io", "--label", f"io.kubernetes.pod.name={cid}", "--label",
                "io.kubernetes.pod.namespace=churn", "--label", "io.kubernetes.container.name=app",
                random.choice(images), cid, "/bin/sleep", "3600")
        live.append(cid)
        if len(live) > alive:
            remove(lab, live.pop(0))
        done[0] = i + 1
    for cid in live:
        remove(lab, cid)


def remove(lab, cid):
    subprocess.run(["nsenter", "-t", str(lab.proc.pid), "-m", "ctr", "-a", lab.sock, "-n", "k8s.io",
                    "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)
    for _ in range(50):
        r = subprocess.run(["nsenter", "-t", str(lab.proc.pid), "-m", "ctr", "-a", lab.sock, "-n", "k8s.io",
                            "tasks", "delete", cid], capture_output=True)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    lab.ctr("containers", "delete", cid)


def plot(rows, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing here: draw it with `/usr/bin/python3 bench/soak.py --plot-only <csv>`")
        return
    t = [r["seconds"] / 60 for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for a, key, label in zip(ax, ["rss_mib", "fds", "series", "cycles"],
                             ["agent RSS (MiB)", "open FDs", "exported series", "churn cycles done"]):
        a.plot(t, [r[key] for r in rows])
        a.set_ylabel(label)
        a.grid(True, alpha=0.3)
    ax[-1].set_xlabel("minutes")
    fig.suptitle("stalewatch churn soak (bench/soak.py)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"plot: {png}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--running", type=int, default=100)
    ap.add_argument("--alive", type=int, default=4, help="churn containers alive at a time")
    ap.add_argument("--update-every", type=int, default=180, help="seconds between advisory updates")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "soak"))
    ap.add_argument("--plot-only", metavar="CSV", help="only draw CSV's plot (e.g. with a Python that has matplotlib)")
    a = ap.parse_args()
    if a.plot_only:
        with open(a.plot_only) as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        plot(rows, a.plot_only.rsplit(".", 1)[0] + ".png")
        return
    # The agent's allocator as the DaemonSet sets it (deploy/base/daemonset.yaml).
    os.environ["MALLOC_ARENA_MAX"] = "2"
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    with alpine_node("soak-", a.running) as (work, lab):
        images = [f"bench.example/img:img{i}" for i in range(a.running)]
        images += [import_release(lab, work, v, t) for v, t in (("3.16.9", "a316"), ("3.12.12", "a312"))]
        mirror = os.path.join(work, "mirror")
        os.makedirs(os.path.join(mirror, "Alpine"))
        src_zip = os.path.join(SHARED, "osv/Alpine/all.zip")
        shutil.copy(src_zip, os.path.join(mirror, "Alpine", "all.zip"))
        state = os.path.join(work, "state")
        agent = Agent(lab.sock, state, mirror, ["Alpine"], ["--reconcile-interval", "10s", "--advisory-refresh", "30s"])
        started = time.time()
        agent.wait(lambda m: len(exported_pods(m)) >= a.running, 600, "every running container exported")
        print(f"{a.running} containers exported after {time.time() - started:.1f} s", flush=True)
        done, stop = [0], threading.Event()
        worker = threading.Thread(target=churn, args=(lab, images, a.cycles, a.alive, done, stop))
        worker.start()
        rows, last_update, updates = [], time.time(), 0
        while worker.is_alive():
            rows.append(sample(agent, started, done))
            if time.time() - last_update > a.update_every:
                updates += 1
                updated_zip(src_zip, os.path.join(mirror, "Alpine", "all.zip"), updates)
                last_update = time.time()
            if len(rows) % 12 == 0:
                print(rows[-1], flush=True)
            time.sleep(5)
        # Settle: one reconcile after the last deletion.
        time.sleep(25)
        rows.append(sample(agent, started, done))
        m = metrics(agent.port)
        running, exported = running_tasks(lab), exported_pods(m)
        all_pods = set(re.findall(r'pod="([^"]+)"', m))
        agent.stop()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, a.out + ".png")
    # After warm-up (the first fifth of the cycles): the median of the last quarter of the
    # samples against the median of the first quarter, and the extremes.
    warm = [r for r in rows if r["cycles"] >= a.cycles // 5]
    q = max(1, len(warm) // 4)
    drift = {}
    for key in ("rss_mib", "fds", "threads"):
        first, last = statistics.median(r[key] for r in warm[:q]), statistics.median(r[key] for r in warm[-q:])
        vals = [r[key] for r in warm]
        drift[key] = last / first - 1
        print(f"{key}: first quarter median {first}, last quarter median {last} ({100 * drift[key]:+.1f} %), "
              f"min {min(vals)}, max {max(vals)}")
    stale = sorted(all_pods - running)
    missing = sorted(running - exported)
    print(f"cycles {done[0]}, advisory updates {updates}, samples {len(rows)}")
    print(f"end: containerd runs {len(running)}, the agent exports {len(exported)}; "
          f"series of gone containers: {stale[:5]} ({len(stale)}), running but not exported: {missing[:5]} ({len(missing)})")
    ok = not stale and not missing and abs(drift["rss_mib"]) <= 0.1 and abs(drift["fds"]) <= 0.1
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

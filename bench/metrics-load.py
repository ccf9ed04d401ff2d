#!/usr/bin/env python3
"""/metrics under load, on a real private containerd: N distinct Alpine images (the shared
3.20.3 minirootfs, one file apart), one running container each, the agent with the shared
Alpine OSV data. wrk (2 threads, 16 connections, loopback) scrapes /metrics:

1. while the agent inventories every container (from its start until all are exported);
2. while it re-matches every cached inventory after an advisory update (the mirror's zip
   replaced by one with an extra record);
3. idle, and /healthz idle: the baseline of the same HTTP stack in the same run.

Then the oracle: every container's exported vulnerability count equals what
`stalewatch scan containerd:<its image> --format json` finds (distinct vulnerabilities:
findings linked by id and aliases count once, informational ones not at all).

Usage: bench/metrics-load.py [--images 30] [--seconds 20] [--compare OTHER_BINARY]
Needs: target/release/stalewatch, containerd, runc, umoci, wrk, ../shared/data. Run as root.
Goal (issue 15): >= 5000 req/s and p99 < 20 ms under load, no errors, every count right.
"""
import argparse, json, os, re, shutil, subprocess, sys, threading, time, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agent as harness  # noqa: E402  (the agent benchmark's harness)
from agent import BIN, Agent, metrics, alpine_node, sh, value  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def wrk(port, path, seconds):
    """req/s, p99 in ms, errors (socket errors and non-2xx) of one wrk run."""
    out = sh("wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}")
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)\b", out, re.M)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return rps, p99_ms, errors


def updated_zip(src, dst):
    """The mirror's zip plus one record: a real update as the agent's refresh sees one."""
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst, "a") as z:
        z.writestr("ALPINE-BENCH-0001.json", json.dumps({
            "id": "ALPINE-BENCH-0001", "modified": "2026-12-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Alpine:v3.20", "name": "busybox"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0-r0"}]}]}]}))


def distinct_vulnerabilities(report):
    """Findings linked by id or alias count once (union-find), informational ones not at all."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ids = set()
    for f in report["findings"]:
        if f.get("informational"):
            continue
        ids.add(f["id"])
        for a in f.get("aliases", []):
            parent[find(a)] = find(f["id"])
    return len({find(i) for i in ids})


def measure(binary, lab, work, mirror, real_zip, a):
    """The three phases and the oracle with one agent binary; a fresh state directory."""
    state = os.path.join(work, "state")
    harness.BIN = binary
    agent = Agent(lab.sock, state, mirror, ["Alpine"])
    agent.wait(lambda m: value(m, "stalewatch_advisory_records") is not None, 300, "advisories loaded")
    all_ok = lambda m: value(m, "stalewatch_container_scan_status", status="ok") == a.images
    # 1. While the agent inventories the containers.
    t0 = time.time()
    inventory = wrk(agent.port, "/metrics", a.seconds)
    done = all_ok(metrics(agent.port))
    agent.wait(all_ok, 600, "all containers exported")
    print(f"inventory of {a.images} containers: {'still running when wrk stopped' if not done else 'finished during the run'}"
          f" ({time.time() - t0:.1f}s until all exported)")
    # 2. While every cached inventory is re-matched after an advisory update.
    loaded = lambda m: value(m, "stalewatch_rematch_duration_seconds_count") or 0
    before = loaded(metrics(agent.port))
    updated_zip(real_zip, os.path.join(mirror, "Alpine/all.zip.new"))
    os.replace(os.path.join(mirror, "Alpine/all.zip.new"), os.path.join(mirror, "Alpine/all.zip"))
    box = {}
    th = threading.Thread(target=lambda: box.update(r=wrk(agent.port, "/metrics", a.seconds)))
    th.start()
    agent.wait(lambda m: loaded(m) > before, 300, "the re-match after the update")
    th.join()
    rematch = box["r"]
    # 3. Idle, and the same HTTP stack's cheapest answer: the baseline of this run.
    idle = wrk(agent.port, "/metrics", a.seconds)
    healthz = wrk(agent.port, "/healthz", a.seconds)
    size = len(metrics(agent.port))

    # The oracle: the scanner on each image, against the agent's own database.
    m = metrics(agent.port)
    wrong = []
    for i in range(a.images):
        out = subprocess.run([BIN, "scan", f"containerd:bench.example/img:img{i}", "--containerd-address", lab.sock,
                              "--db-dir", os.path.join(work, "state", "db"), "--format", "json"],
                             capture_output=True, text=True)
        if out.returncode not in (0, 1):
            sys.exit(f"scan of img{i} failed: {out.stderr}")
        want = distinct_vulnerabilities(json.loads(out.stdout))
        got = value(m, "stalewatch_container_vulnerabilities", pod=f"c{i}") or 0
        if want != got:
            wrong.append((f"c{i}", got, want))

    agent.stop()
    shutil.rmtree(state, ignore_errors=True)
    phases = [("/metrics during inventory", inventory), ("/metrics during re-match", rematch),
              ("/metrics idle", idle), ("/healthz idle (baseline)", healthz)]
    return {"phases": phases, "size": size, "series": sum(1 for l in m.splitlines() if not l.startswith("#")),
            "worst_rps": min(inventory[0], rematch[0]), "worst_p99": max(inventory[1], rematch[1]),
            "errors": inventory[2] + rematch[2] + idle[2], "healthz_rps": healthz[0], "wrong": wrong}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--compare", help="another stalewatch binary (e.g. the previous commit's), measured first in the same run")
    a = ap.parse_args()
    os.environ["MALLOC_ARENA_MAX"] = "2"
    with alpine_node("stalewatch-metrics-load-", a.images) as (work, lab):
        mirror = os.path.join(work, "mirror")
        os.makedirs(os.path.join(mirror, "Alpine"))
        real_zip = os.path.join(SHARED, "osv/Alpine/all.zip")
        shutil.copy(real_zip, os.path.join(mirror, "Alpine/all.zip"))

        results = []
        for label, binary in ([("before: " + a.compare, a.compare)] if a.compare else []) + [("this build", BIN)]:
            shutil.copy(real_zip, os.path.join(mirror, "Alpine/all.zip"))
            results.append((label, measure(binary, lab, work, mirror, real_zip, a)))
        print(f"{'binary':<40} {'phase':<30} {'req/s':>9} {'p99 ms':>8} {'errors':>7}")
        for label, r in results:
            for name, (rps, p99, err) in r["phases"]:
                print(f"{label[-40:]:<40} {name:<30} {rps:>9.0f} {p99:>8.2f} {err:>7}")
        for label, r in results:
            print(f"{label}: /metrics {r['size'] / 1024:.1f} KiB, {r['series']} series; under load "
                  f"{r['worst_rps'] / r['healthz_rps']:.2f}x /healthz idle; oracle "
                  f"{a.images - len(r['wrong'])}/{a.images} right" + (f", wrong: {r['wrong']}" if r["wrong"] else ""))
        if a.compare:
            (_, old), (_, new) = results
            print(f"this build vs before, under load: {new['worst_rps'] / old['worst_rps']:.2f}x the throughput, "
                  f"p99 {old['worst_p99']:.2f} -> {new['worst_p99']:.2f} ms")
        r = results[-1][1]
        ok = r["worst_rps"] >= 5000 and r["worst_p99"] < 20 and r["errors"] == 0 and not r["wrong"]
        print(f"goal (>= 5000 req/s, p99 < 20 ms, no errors, every count right): {'PASS' if ok else 'FAIL'}")

if __name__ == "__main__":
    main()

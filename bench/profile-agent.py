#!/usr/bin/env python3
"""Where the agent's memory goes: the agent benchmark's setting (N distinct images of a real root
filesystem, one running container each, the full shared OSV mirror, as deployed:
MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072) with the agent run under heaptrack; once every
container is scanned and the agent has settled, it is stopped and heaptrack_print lists the
biggest consumers at the heap's peak and what is still allocated at the end (the steady set).

With --synthetic-records N the mirror is instead agent.py's synthetic Debian mirror of N records
(the 500,000-record setting of the benchmark).

Usage: bench/profile-agent.py --rootfs DIR [--images 100] [--synthetic-records N] [--out DIR]
Needs: heaptrack, target/release/stalewatch, containerd, runc, umoci, ../shared/data/osv. Root.
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent import BIN, OSV, Containerd, dpkg_names, metrics, proc_mem, run_distinct_images, synthetic_mirror, value  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--synthetic-records", type=int, default=0)
    ap.add_argument("--out", default="/tmp/stalewatch-profile")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stalewatch-profile-")
    lab = None
    try:
        lab = Containerd(os.path.join(work, "ctrd"))
        run_distinct_images(lab, work, a.rootfs, a.images)
        mirror = os.path.join(work, "mirror")
        if a.synthetic_records:
            synthetic_mirror(mirror, a.synthetic_records, dpkg_names(a.rootfs))
        else:
            for eco in os.listdir(OSV):
                if os.path.isdir(os.path.join(OSV, eco)):
                    os.makedirs(os.path.join(mirror, eco))
                    os.symlink(os.path.join(OSV, eco, "all.zip"), os.path.join(mirror, eco, "all.zip"))
        state = os.path.join(work, "state")
        env = dict(os.environ, MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="131072")
        trace = os.path.join(a.out, "agent.zst")
        port = 19477
        args = ["heaptrack", "-o", trace, BIN, "agent", "--containerd-address", lab.sock, "--state-dir", state,
                "--db-dir", os.path.join(state, "db"), "--advisory-source", mirror, "--listen", f"127.0.0.1:{port}",
                "--findings-listen", "off", "--log-level", "info"]
        for eco in sorted(os.listdir(mirror)):
            args += ["--ecosystem", eco]
        wrapper = subprocess.Popen(args, env=env, stdout=open(os.path.join(a.out, "agent.log"), "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 3600
        while time.time() < deadline:
            try:
                if value(metrics(port), "stalewatch_container_scan_status", status="ok") == a.images:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            sys.exit("timeout: not every container scanned")
        time.sleep(20)
        agent = subprocess.run(["pgrep", "-f", f"^{BIN} agent"], capture_output=True, text=True).stdout.split()
        pid = int(agent[0])
        peak, steady = proc_mem(pid)
        print(f"under heaptrack: RSS peak {peak:.1f} MiB, steady {steady:.1f} MiB (heaptrack's own overhead included)")
        os.kill(pid, signal.SIGTERM)
        wrapper.wait(timeout=600)
        for what, flags in (("peak", ["--print-peaks", "1"]), ("leaked", ["--print-leaks", "1"])):
            out = subprocess.run(["heaptrack_print", "-f", trace, "--print-allocators", "0", "--print-temporary", "0",
                                  "--print-peaks", "0", "--print-leaks", "0", "-n", "15"] + flags,
                                 capture_output=True, text=True).stdout
            open(os.path.join(a.out, f"{what}.txt"), "w").write(out)
        print(f"profile: {a.out}/peak.txt, {a.out}/leaked.txt")
    finally:
        if lab:
            lab.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

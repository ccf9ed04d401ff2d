#!/usr/bin/env python3
"""Agent benchmark on a real private containerd: N distinct images built from a real root
filesystem, one running container each, the agent with the full OSV mirror (and then a
synthetic index of >= 500,000 records). Measures, in one run:

- peak (VmHWM) and steady (VmRSS after settling) memory of the agent;
- cold inventory of the big base layer through containerd vs `gzip -dc | tar -t` of the same blob;
- re-match of all cached inventories after an advisory update vs their cold inventory.

Usage: bench/agent.py --rootfs DIR [--images 100] [--synthetic-records 500000]
Needs: target/release/stalewatch, containerd, runc, umoci, ../shared/data/osv. Run as root.
"""
import argparse, contextlib, json, os, random, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
# STALEWATCH_BENCH_BIN: another build of the agent (a profiling one, or the one before a change).
BIN = os.environ.get("STALEWATCH_BENCH_BIN") or os.path.join(HERE, "..", "target", "release", "stalewatch")
OSV = os.path.join(HERE, "..", "..", "shared", "data", "osv")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Containerd:
    def __init__(self, base):
        self.base, self.sock = base, os.path.join(base, "containerd.sock")
        for d in ("root", "state", "run", "opt"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        with open(os.path.join(base, "config.toml"), "w") as f:
            f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n[grpc]\n  address = "{self.sock}"\n'
                    f'[plugins]\n  [plugins."io.containerd.internal.v1.opt"]\n    path = "{base}/opt"\n')
        script = f"mount -n --bind '{base}/run' /run && exec containerd --config '{base}/config.toml'"
        self.proc = subprocess.Popen(["setsid", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                     stdout=open(os.path.join(base, "containerd.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(200):
            if subprocess.run(["ctr", "-a", self.sock, "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        self.containers = []

    def ctr(self, *args):
        return sh("nsenter", "-t", str(self.proc.pid), "-m", "ctr", "-a", self.sock, "-n", "k8s.io", *args)

    def run(self, cid, image):
        self.ctr("run", "-d", "--null-io", "--label", f"io.kubernetes.pod.name={cid}", "--label", "io.kubernetes.pod.namespace=bench",
                 "--label", "io.kubernetes.container.name=app", image, cid, "/bin/sleep", "3600")
        self.containers.append(cid)

    def close(self):
        for c in self.containers:
            subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "ctr", "-a", self.sock, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", c], capture_output=True)
        time.sleep(1)
        for c in self.containers:
            for _ in range(20):
                r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "ctr", "-a", self.sock, "-n", "k8s.io", "tasks", "delete", c], capture_output=True)
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "ctr", "-a", self.sock, "-n", "k8s.io", "containers", "delete", c], capture_output=True)
        self.proc.terminate()
        self.proc.wait()


def metrics(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def value(text, name, **labels):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, v = line.rsplit(" ", 1)
        if series.split("{")[0] != name:
            continue
        if all(f'{k}="{val}"' in series for k, val in labels.items()):
            total += float(v)
            found = True
    return total if found else None


def first_inventory_seconds(log):
    """The first image's inventory time an agent logged (the base layer's cold read)."""
    v, unit = re.search(r"image inventoried in ([0-9.]+)(ms|s)", log).groups()
    return float(v) / 1000 if unit == "ms" else float(v)


def proc_mem(pid):
    status = open(f"/proc/{pid}/status").read()
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return get("VmHWM"), get("VmRSS")


class Agent:
    def __init__(self, sock, state, source, ecosystems, extra=()):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); self.port = s.getsockname()[1]; s.close()
        extra = list(extra)
        # Defaults that `extra` may override (a flag given twice is a usage error).
        for flag, default in (("--advisory-refresh", "2s"), ("--reconcile-interval", "30s")):
            if flag not in extra:
                extra += [flag, default]
        # STALEWATCH_BENCH_WRAP: a profiler the agent runs under ("heaptrack -o FILE", say).
        wrap = os.environ.get("STALEWATCH_BENCH_WRAP", "").split()
        args = wrap + [BIN, "agent", "--containerd-address", sock, "--state-dir", state, "--db-dir", os.path.join(state, "db"),
                "--advisory-source", source, "--listen", f"127.0.0.1:{self.port}", "--log-level", "info"]
        for e in ecosystems:
            args += ["--ecosystem", e]
        args += extra
        self.log = os.path.join(state, f"agent-{self.port}.log")
        os.makedirs(state, exist_ok=True)
        self.proc = subprocess.Popen(args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                m = metrics(self.port)
                if cond(m):
                    return m
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"timeout waiting for {what}; log: {open(self.log).read()[-2000:]}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def run_distinct_images(lab, work, rootfs, n):
    """n images of `rootfs`, one file apart (so each has its own digest and one small layer of
    its own), imported as bench.example/img:img<i>, one running container c<i> each; returns
    the OCI layout they came from."""
    layout = os.path.join(work, "layout")
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:base")
    sh("umoci", "insert", "--image", f"{layout}:base", rootfs, "/")
    uniq = os.path.join(work, "uniq")
    os.makedirs(uniq, exist_ok=True)
    for i in range(n):
        with open(os.path.join(uniq, "release"), "w") as f:
            f.write(f"bench image {i}\n")
        sh("umoci", "tag", "--image", f"{layout}:base", f"img{i}")
        sh("umoci", "insert", "--image", f"{layout}:img{i}", uniq, "/etc/stalewatch-bench")
    archive = os.path.join(work, "images.tar")
    sh("tar", "-C", layout, "-cf", archive, ".")
    lab.ctr("images", "import", "--base-name", "bench.example/img", archive)
    for i in range(n):
        lab.run(f"c{i}", f"bench.example/img:img{i}")
    return layout


@contextlib.contextmanager
def alpine_node(prefix, n):
    """(work dir, a private containerd running n distinct images of the shared Alpine 3.20.3
    minirootfs); both gone afterwards."""
    work = tempfile.mkdtemp(prefix=prefix)
    lab = None
    try:
        root = os.path.join(work, "rootfs")
        os.makedirs(root)
        alpine = os.path.join(HERE, "..", "..", "shared", "data", "rootfs/alpine/alpine-minirootfs-3.20.3-x86_64.tar.gz")
        sh("tar", "-xzf", alpine, "-C", root)
        lab = Containerd(os.path.join(work, "ctrd"))
        run_distinct_images(lab, work, root, n)
        yield work, lab
    finally:
        if lab:
            lab.close()
        shutil.rmtree(work, ignore_errors=True)


def dpkg_names(rootfs):
    """The binary and source package names of a root's dpkg status, sorted: the names a
    synthetic mirror gives their share of records."""
    with open(os.path.join(rootfs, "var/lib/dpkg/status")) as f:
        return sorted({l.split(":", 1)[1].strip().split()[0] for l in f if l.startswith(("Package:", "Source:"))})


def synthetic_mirror(dst, records, names):
    """A Debian mirror of `records` generated OSV records, shaped like the real converter's
    output, spread over 100,000 package names as densely as the real Debian data (about eight
    records per package): the rootfs' own packages get their share, the rest are invented."""
    os.makedirs(os.path.join(dst, "Debian"), exist_ok=True)
    rnd = random.Random(42)
    with zipfile.ZipFile(os.path.join(dst, "Debian", "all.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(records):
            pkg = rnd.choice(names) if rnd.random() < 8 * len(names) / records else f"synthetic-pkg-{rnd.randrange(100000)}"
            rec = {"id": f"DEBIAN-SYN-{i:07d}", "modified": "2026-01-01T00:00:00Z", "upstream": [f"CVE-2099-{i}"],
                   "details": "synthetic record for the scale benchmark",
                   "affected": [{"package": {"ecosystem": f"Debian:{rel}", "name": pkg},
                                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{rnd.randrange(1, 9)}.{rnd.randrange(20)}-1"}]}]}
                                for rel in (11, 12)]}
            z.writestr(f"DEBIAN-SYN-{i:07d}.json", json.dumps(rec, separators=(",", ":")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--synthetic-records", type=int, default=500000)
    ap.add_argument("--agent-arg", action="append", default=[], help="extra agent flag (repeatable), e.g. --agent-arg=--drift-interval=5s")
    ap.add_argument("--updates", type=int, default=5, help="advisory updates, each re-matched (the median counts: one is noisy)")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic index's run (profiling the rest)")
    ap.add_argument("--perf-rematch", metavar="FILE", help="perf record the agent over the updates' re-matches into FILE")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="stalewatch-bench-")
    lab = None
    try:
        lab = Containerd(os.path.join(work, "ctrd"))
        layout = run_distinct_images(lab, work, a.rootfs, a.images)
        npkgs = len([l for l in open(os.path.join(a.rootfs, "var/lib/dpkg/status")) if l.startswith("Package:")])
        # The base layer blob, for the gzip | tar baseline.
        index = json.load(open(os.path.join(layout, "index.json")))
        man = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "base")
        manifest = json.load(open(os.path.join(layout, "blobs", *man["digest"].split(":"))))
        blob = os.path.join(layout, "blobs", *manifest["layers"][0]["digest"].split(":"))

        # Mirror: the full shared OSV data (a copy of links, so one zip can be "updated").
        mirror = os.path.join(work, "mirror")
        for eco in os.listdir(OSV):
            if os.path.isdir(os.path.join(OSV, eco)):
                os.makedirs(os.path.join(mirror, eco))
                os.symlink(os.path.join(OSV, eco, "all.zip"), os.path.join(mirror, eco, "all.zip"))
        ecos = sorted(e for e in os.listdir(mirror))
        t0 = time.time()
        agent = Agent(lab.sock, os.path.join(work, "state"), mirror, ecos, a.agent_arg)
        ok = lambda m: value(m, "stalewatch_container_scan_status", status="ok") == a.images
        m = agent.wait(ok, 900, "all containers scanned")
        t_all = time.time() - t0
        log = open(agent.log).read()
        first_scan = first_inventory_seconds(log)
        scan_sum = value(m, "stalewatch_scan_duration_seconds_sum")
        records = value(m, "stalewatch_advisory_records")
        n_ecos = sum(1 for l in m.splitlines() if l.startswith("stalewatch_advisory_records{"))
        time.sleep(5)
        peak, steady = proc_mem(agent.proc.pid)

        # Runtime checks (maps + live package databases) of every container, when on: two passes.
        runtime_on = any(x.startswith("--drift-interval") and not x.endswith("off") for x in a.agent_arg)
        # The first pass reads every live database; later passes find them unchanged (stat only).
        def rt(m):
            return tuple(value(m, n) or 0 for n in ("stalewatch_runtime_refresh_duration_seconds_count",
                "stalewatch_runtime_check_duration_seconds_sum", "stalewatch_runtime_check_duration_seconds_count",
                "stalewatch_runtime_refresh_duration_seconds_sum"))
        if runtime_on:
            m = agent.wait(lambda m: rt(m)[0] >= 1, 120, "first runtime pass")
            first = rt(m)
            m = agent.wait(lambda m: rt(m)[0] >= first[0] + 3, 120, "steady runtime passes")
            last = rt(m)
            first_check = first[1] / max(first[2], 1)
            check_avg = (last[1] - first[1]) / max(last[2] - first[2], 1)
            pass_avg = (last[3] - first[3]) / max(last[0] - first[0], 1)
            first_pass = first[3] / max(first[0], 1)
            time.sleep(2)
            _, rt_steady = proc_mem(agent.proc.pid)
        # Baseline: dpkg itself listing each running container's live database, in-process cost
        # excluded as far as a process can be (dpkg-query per container, best of 3).
        pids = [l.split()[1] for l in lab.ctr("tasks", "ls").splitlines()[1:]]
        base_q = []
        for _ in range(3):
            s = time.perf_counter()
            for pid in pids[:20]:
                subprocess.run(["dpkg-query", f"--admindir=/proc/{pid}/root/var/lib/dpkg", "-W"], check=True, capture_output=True)
            base_q.append((time.perf_counter() - s) / len(pids[:20]))
        dpkg_q = min(base_q)

        # gzip | tar over the same blob, best of 3.
        base = []
        for _ in range(3):
            s = time.perf_counter()
            subprocess.run(f"gzip -dc '{blob}' | tar -t > /dev/null", shell=True, check=True)
            base.append(time.perf_counter() - s)
        gz = min(base)

        # Advisory updates: a fresh copy of the Debian zip (new mtime) → rebuild → re-match.
        layers_before = value(m, "stalewatch_layers_read_total")
        perf = None
        if a.perf_rematch:
            perf = subprocess.Popen(["perf", "record", "-F", "4999", "--call-graph", "dwarf,16384", "-p", str(agent.proc.pid), "-o", a.perf_rematch],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        rematches = []
        for _ in range(a.updates):
            before = (value(m, "stalewatch_rematch_duration_seconds_sum") or 0, value(m, "stalewatch_rematch_duration_seconds_count") or 0)
            os.remove(os.path.join(mirror, "Debian", "all.zip"))
            shutil.copy(os.path.join(OSV, "Debian", "all.zip"), os.path.join(mirror, "Debian", "all.zip"))
            m = agent.wait(lambda m: (value(m, "stalewatch_rematch_duration_seconds_count") or 0) > before[1], 120, "re-match")
            rematches.append((value(m, "stalewatch_rematch_duration_seconds_sum") - before[0]) / (value(m, "stalewatch_rematch_duration_seconds_count") - before[1]))
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        rematch = sorted(rematches)[len(rematches) // 2]
        layers_after = value(m, "stalewatch_layers_read_total")
        agent.stop()

        # The cold read again on a running agent whose index is built (a new image arriving on
        # a node): a fresh state with the index kept, so no index build shares the two cores.
        warm = os.path.join(work, "state-index-built")
        shutil.copytree(os.path.join(work, "state", "db"), os.path.join(warm, "db"))
        agent3 = Agent(lab.sock, warm, mirror, ecos, a.agent_arg)
        agent3.wait(ok, 900, "all containers scanned (index built)")
        cold_read = first_inventory_seconds(open(agent3.log).read())
        agent3.stop()
        if a.no_synthetic:
            print(f"re-match of {a.images} cached inventories, {len(rematches)} updates: median {rematch * 1000:.1f} ms "
                  f"(each: {', '.join(f'{r * 1000:.1f}' for r in rematches)}); cold read {cold_read:.3f} s vs gzip|tar {gz:.3f} s: {cold_read / gz:.2f}x "
                  f"(at the agent's start, beside the index build: {first_scan:.3f} s, {first_scan / gz:.2f}x); "
                  f"steady {steady:.1f} MiB, peak {peak:.1f} MiB")
            return

        # The same images against a synthetic Debian index of >= 500,000 records.
        names = dpkg_names(a.rootfs)
        syn = os.path.join(work, "synthetic")
        synthetic_mirror(syn, a.synthetic_records, names)
        agent2 = Agent(lab.sock, os.path.join(work, "state2"), syn, ["Debian"], a.agent_arg)
        agent2.wait(ok, 1800, "all containers scanned (synthetic index)")
        build_peak, _ = proc_mem(agent2.proc.pid)
        time.sleep(5)
        syn_peak, syn_steady = proc_mem(agent2.proc.pid)
        idx = os.path.getsize(os.path.join(work, "state2", "db", "Debian.idx"))
        agent2.stop()

        print(f"\n## Agent benchmark ({a.images} distinct images, {npkgs} packages each, one running container each; extra flags: {a.agent_arg or 'none'})\n")
        print(f"- all containers inventoried and matched in {t_all:.1f} s from agent start (index build included)")
        print(f"- agent memory with the full shared OSV index ({n_ecos} ecosystems, {records:,.0f} records): peak {peak:.1f} MiB, steady {steady:.1f} MiB")
        print(f"- memory with a synthetic Debian index of {a.synthetic_records:,} records ({idx / 2**20:.0f} MiB on disk): "
              f"peak {syn_peak:.1f} MiB, steady {syn_steady:.1f} MiB (the index is built by the refresh child process, not the agent)")
        print(f"- cold inventory of the {os.path.getsize(blob) / 2**20:.0f} MiB gzip base layer through containerd, on an agent whose index is built: {cold_read:.3f} s; "
              f"`gzip -dc | tar -t` of the same blob: {gz:.3f} s; ratio {cold_read / gz:.2f}× "
              f"(at the agent's first start, beside its index build: {first_scan:.3f} s, {first_scan / gz:.2f}×)")
        if runtime_on:
            print(f"- runtime check of one container (its processes' maps, its live package databases' identity): {check_avg * 1000:.3f} ms in steady state; "
                  f"the first check, which reads and catalogs its live dpkg database, {first_check * 1000:.2f} ms; "
                  f"`dpkg-query -W` of the same live database: {dpkg_q * 1000:.2f} ms (steady check {dpkg_q / check_avg:.0f}x cheaper, first check {dpkg_q / first_check:.1f}x)")
            print(f"- one pass over all {a.images} containers (host PID namespaces listed once): {pass_avg * 1000:.1f} ms in steady state, {first_pass * 1000:.0f} ms the first; "
                  f"agent steady memory after the runtime passes: {rt_steady:.1f} MiB")
        print(f"- re-match of all {a.images} cached inventories after an advisory update: {rematch * 1000:.1f} ms "
              f"(median of {len(rematches)} updates: {', '.join(f'{r * 1000:.1f}' for r in rematches)} ms); "
              f"their cold inventory took {scan_sum:.2f} s in total: re-match is {scan_sum / rematch:.0f}× cheaper; "
              f"layers read during the update: {layers_after - layers_before:.0f}")
    finally:
        if lab:
            lab.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The agent pod's memory on the lab cluster, as the kubelet sees it: its container's cgroup
(`memory.usage_in_bytes`, and `total_rss` / `total_cache` of `memory.stat`; cgroup v1 here) while
N pods run. Needs a lab with stalewatch deployed (`eval "$(scripts/lab-cluster.sh up)"`).

Usage: bench/lab-agent.py [--pods 20]
Prints a Markdown table for docs/benchmarks.md. The pods run the Alpine 3.16.9 minirootfs
image the end-to-end test builds (localhost/legacy-alpine:3.16.9, imported by tests/cluster.rs
or by this script), ten each from two Deployments, so the agent inventories two images."""
import argparse, json, os, subprocess, sys, time, urllib.parse, urllib.request

KLAB = os.environ.get("STALEWATCH_KUBE_LAB", "/var/cache/kube-lab")
KUBECONFIG = os.environ.get("KUBECONFIG") or sys.exit("KUBECONFIG: run `eval \"$(scripts/lab-cluster.sh up)\"`")
IMAGE = "localhost/legacy-alpine:3.16.9"


def k(*args, **kw):
    return subprocess.run([f"{KLAB}/bin/kubectl", f"--kubeconfig={KUBECONFIG}", *args], check=True,
                          capture_output=True, text=True, **kw).stdout


def cgroup_of(pod):
    uid, cid = pod["metadata"]["uid"], pod["status"]["containerStatuses"][0]["containerID"].split("//")[1]
    for qos in ("", "burstable/", "besteffort/"):
        d = f"/sys/fs/cgroup/memory/kubepods/{qos}pod{uid}/{cid}"
        if os.path.isdir(d):
            return d
    sys.exit(f"no cgroup for {pod['metadata']['name']}")


def memory(d):
    usage = int(open(f"{d}/memory.usage_in_bytes").read())
    stat = dict(l.split() for l in open(f"{d}/memory.stat"))
    return usage, int(stat["total_rss"]), int(stat["total_cache"])


def scanned(n):
    q = 'count(stalewatch_container_scan_status{namespace="bench",status="ok"})'
    url = "http://127.0.0.1:19090/api/v1/query?query=" + urllib.parse.quote(q)
    r = json.load(urllib.request.urlopen(url))["data"]["result"]
    return r and int(r[0]["value"][1]) >= n


def import_image():
    """The Alpine 3.16.9 minirootfs as a one-layer image (buildah, the image cache's storage),
    imported into the node's containerd."""
    tgz = os.path.join(os.path.dirname(__file__), "../../shared/data/rootfs/alpine/alpine-minirootfs-3.16.9-x86_64.tar.gz")
    c = "/var/cache/stalewatch-image"
    b = ["buildah", "--root", f"{c}/storage", "--runroot", f"{c}/run", "--storage-driver", "vfs"]
    env = dict(os.environ, TMPDIR=f"{c}/tmp")
    run = lambda *args: subprocess.run(b + list(args), check=True, capture_output=True, text=True, env=env).stdout.strip()
    ctr = run("from", "scratch")
    run("add", ctr, tgz, "/")
    run("commit", "-q", "--rm", ctr, IMAGE)
    tar = f"{c}/tmp/bench-legacy.tar"
    if os.path.exists(tar):
        os.remove(tar)
    run("push", "-q", IMAGE, f"docker-archive:{tar}:{IMAGE}")
    subprocess.run(["ctr", "-n", "k8s.io", "images", "import", "--digests", tar], check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    a = ap.parse_args()
    import_image()
    subprocess.run([f"{KLAB}/bin/kubectl", f"--kubeconfig={KUBECONFIG}", "create", "namespace", "bench"],
                   capture_output=True)
    for name, n in (("bench-a", a.pods // 2), ("bench-b", a.pods - a.pods // 2)):
        k("apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "bench"},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                                         "command": ["sleep", "86400"]}]}}}}))
    start = time.time()
    while not scanned(a.pods):
        if time.time() - start > 300:
            sys.exit("pods not all scanned within 300 s")
        time.sleep(2)
    took = time.time() - start
    time.sleep(30)  # steady: a few reconciles and runtime checks after the last pod
    agent = json.loads(k("-n", "stalewatch", "get", "pods", "-l", "app.kubernetes.io/name=stalewatch", "-o", "json"))["items"][0]
    usage, rss, cache = memory(cgroup_of(agent))
    print(f"| running pods | all exported after | cgroup usage | total_rss | total_cache |")
    print(f"|---:|---:|---:|---:|---:|")
    print(f"| {a.pods} | {took:.1f} s | {usage / 2**20:.1f} MiB | {rss / 2**20:.1f} MiB | {cache / 2**20:.1f} MiB |")
    k("delete", "namespace", "bench", "--wait=false")


if __name__ == "__main__":
    main()

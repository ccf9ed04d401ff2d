# Settings and helpers of the lab cluster (scripts/lab-cluster.sh); sourced, not run.
# Every setting can be overridden from the environment. docs/lab-cluster.md explains each
# non-default flag and which are lab-only.
LAB=${STALEWATCH_LAB:-/var/tmp/stalewatch-lab}     # the cluster's files; state/ is wiped by `down`
KLAB=${STALEWATCH_KUBE_LAB:-/var/cache/kube-lab}   # Kubernetes binaries and pause image (kube-build.sh)
BIN=$KLAB/bin
ETCD=$KLAB/root/usr/bin/etcd
PAUSE_TAR=$KLAB/pause/pause.tar
PAUSE_IMAGE=localhost/pause:3.4.1
LAB_CONTAINERD=${STALEWATCH_LAB_CONTAINERD:-1.7}   # 1.7 (scripts/containerd-fetch.sh) or 1.6 (Debian 12's)
# EKS's and GKE's setting: a CRI pull keeps no layer blob once unpacked (docs/lab-cluster.md).
LAB_DISCARD_LAYERS=${STALEWATCH_LAB_DISCARD_LAYERS:-true}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
SHARED=${STALEWATCH_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}   # the shared corpus beside the project
S=$LAB/state
NODE=stalewatch-lab
# The lab Node's `kubernetes.azure.com/node-image-version`: a real AKS node image's version.
LAB_NODE_IMAGE=AKSUbuntu-2204gen2containerd-202511.12.0
BRIDGE=swlab0
CNI_NET=stalewatch-lab
# The benchmarking block 198.18.0.0/15 only: this machine may not send to 10/8, 172.16/12 or
# 192.168/16, and these ranges collide with no real network.
POD_CIDR=198.18.0.0/16
SVC_CIDR=198.19.0.0/16
SVC_IP=198.19.0.1
# The kube-dns Service: its endpoint is scripts/lab/dns.py on the host's address.
DNS_IP=198.19.0.10
API_PORT=16443
ETCD_PORT=23790
ETCD_PEER_PORT=23800
PROM_PORT=19090
AM_PORT=19093
WEBHOOK_PORT=19094
MIRROR_PORT=19095
SD_PORT=19096
PORTS="$API_PORT $ETCD_PORT $ETCD_PEER_PORT 10250 10248 10256 10249 10257 10259 $PROM_PORT $AM_PORT $WEBHOOK_PORT $MIRROR_PORT $SD_PORT"
# What the components change on the host: snapshotted by `up`, restored by `down`.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
 kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding"
# Fixed host paths the kubelet, containerd and the CNI plugins create; `down` removes the ones
# `up` found absent.
HOST_DIRS="/var/lib/kubelet /var/log/pods /var/log/containers /usr/libexec/kubernetes /run/containerd /var/lib/cni /run/netns"
COMPONENTS="containerd etcd apiserver kcm scheduler kube-proxy dns kubelet mirror webhook pod-sd prometheus alertmanager"
K="$BIN/kubectl --kubeconfig=$S/admin.kubeconfig --cache-dir=$S/kubectl-cache --request-timeout=15s"
# containerd at the standard paths (as AKS): the DaemonSet mounts them as on any node.
SOCK=/run/containerd/containerd.sock
CTR="ctr --address $SOCK --namespace k8s.io"

T0=$(date +%s)
log() { echo "lab [$(($(date +%s) - T0))s] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# The IPv4 address of the interface that holds the default route: what pods reach the host on.
host_ip() {
    dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
    ip -4 -o addr show dev "$dev" scope global | awk '{sub("/.*", "", $4); print $4; exit}'
}
# start NAME CMD...: detached in its own session; pid in $S/pids/NAME, log in $S/logs/NAME.log.
start() {
    n=$1
    shift
    setsid "$@" >"$S/logs/$n.log" 2>&1 </dev/null &
    echo $! >"$S/pids/$n"
}
# alive NAME: its recorded pid runs and is ours (its command line names $LAB: a reused pid is not).
alive() {
    p=$(cat "$S/pids/$1" 2>/dev/null) || return 1
    kill -0 "$p" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] || return 1
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$LAB/"
}
# stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 15).
stop() {
    alive "$1" || return 0
    p=$(cat "$S/pids/$1")
    kill "$p" 2>/dev/null || true
    t=${2:-15}
    while alive "$1" && [ "$t" -gt 0 ]; do
        sleep 1
        t=$((t - 1))
    done
    alive "$1" && kill -9 "$p" 2>/dev/null || true
    rm -f "$S/pids/$1"
}
# wait_for SECONDS CMD...: polls once a second.
wait_for() {
    t=$1
    shift
    until "$@" >/dev/null 2>&1; do
        t=$((t - 1))
        [ "$t" -gt 0 ] || return 1
        sleep 1
    done
}
# Says which component failed and shows the end of its log.
fail() {
    log "ERROR: $1 failed to start; the end of $S/logs/$1.log:"
    tail -n 25 "$S/logs/$1.log" >&2 2>/dev/null || true
    exit 1
}
# The rules and chains of both families, each line prefixed with its table, without counters:
# what `down` compares with `up`'s. A table that appeared with only its built-in chains at
# their default ACCEPT policy (the kernel's, loaded on first use) holds nothing of ours.
ipt_snapshot() {
    for c in iptables-save ip6tables-save; do
        $c 2>/dev/null | awk -v fam="$c" '
            /^\*/ { table = substr($0, 2); next }
            /^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT/ { next }
            /^[:-]/ { sub(/ \[[0-9]+:[0-9]+\]/, ""); print fam, table, $0 }'
    done
}

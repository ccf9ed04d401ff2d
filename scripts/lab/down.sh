# `scripts/lab-cluster.sh down`, sourced: stops what `up` started (by recorded pid only), undoes
# every host change it and its components made, then checks that nothing is left. Safe to run
# again, after an orderly stop and after kill -9 of any component.
down() {
    [ -d "$S" ] || {
        log "nothing to do ($S absent)"
        return 0
    }
    pids=$(cat "$S"/pids/* 2>/dev/null || true)
    # Controllers first: nothing recreates pods; then the kubelet tears its pods down itself
    # (CNI DEL, unmounts) while the API, the kubelet and containerd still run.
    stop kcm
    stop scheduler
    if alive apiserver && alive kubelet && alive containerd; then
        $K delete namespace stalewatch --wait=false >/dev/null 2>&1 || true
        $K delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=90s >/dev/null 2>&1 || true
    fi
    stop kube-proxy
    "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    stop kubelet
    log "pods deleted, kube-proxy's rules removed, kubelet stopped"
    # Tasks left: killed while containerd still knows them (else their shims outlive it).
    if alive containerd; then
        for id in $($CTR task ls -q 2>/dev/null); do $CTR task kill -s SIGKILL "$id" 2>/dev/null || true; done
        sleep 1
        for id in $($CTR task ls -q 2>/dev/null); do $CTR task rm -f "$id" >/dev/null 2>&1 || true; done
    fi
    for n in prometheus pod-sd alertmanager mirror webhook dns containerd apiserver etcd; do stop "$n"; done
    log "containerd, the control plane and the observability stack stopped"
    # After a crash: what still runs in the kubelet's pod cgroups, then shims of this containerd.
    for f in $(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs 2>/dev/null); do
        for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; done
    done
    for d in /proc/[0-9]*; do
        tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q "^[^ ]*containerd-shim.* -address /run/containerd/containerd.sock" &&
            kill -9 "${d#/proc/}" 2>/dev/null
    done
    sleep 1
    # Mounts under the lab's state, the kubelet's and containerd's, deepest first; new netns.
    for _ in 1 2 3; do
        awk '{print $5}' /proc/self/mountinfo | grep -e "^$S/" -e "^/var/lib/containerd/" -e "^/var/lib/containerd$" -e "^/run/containerd/" -e "^/var/lib/kubelet/" |
            sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    done
    for n in $(ls /run/netns 2>/dev/null); do
        grep -qx "$n" "$S/snap/netns" || {
            umount "/run/netns/$n" 2>/dev/null || true
            rm -f "/run/netns/$n"
        }
    done
    grep -qx /run/netns "$S/snap/absent-dirs" && grep -q " /run/netns " /proc/self/mountinfo && umount /run/netns
    # The chains the kubelet, kube-proxy and the CNI plugins added (KUBE-*, CNI-*), both families.
    for v in "" 6; do
        for t in filter nat mangle; do
            "ip${v}tables-save" -t $t 2>/dev/null | grep -q -e KUBE- -e CNI- || continue
            "ip${v}tables-save" -t $t 2>/dev/null | grep -v -e KUBE- -e CNI- | "ip${v}tables-restore" -T $t
        done
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    ip route del blackhole "$SVC_CIDR" 2>/dev/null || true
    for f in /var/lib/cni/results/"$CNI_NET"-*-eth0; do
        [ -e "$f" ] || continue
        id=${f#*/"$CNI_NET"-}
        rm -f "$f" "/var/lib/cni/results/cni-loopback-${id%-eth0}-lo"
    done
    for h in /sys/fs/cgroup/*/; do
        [ -d "${h}kubepods" ] && find "${h}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    while IFS== read -r k v; do sysctl -q -w "$k=$v" || true; done <"$S/snap/sysctl"
    for d in $(cat "$S/snap/absent-dirs"); do rm -rf "$d"; done
    log "host state restored"
    # Check, then drop the state: a reused etcd would show a stale Ready node.
    bad=0
    left() {
        echo "LEFT: $*" >&2
        bad=1
    }
    for p in $pids; do
        kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left "process $p"
    done
    grep -q -e " $S/" -e " /var/lib/kubelet/" /proc/self/mountinfo && left "mounts"
    ip link show "$BRIDGE" >/dev/null 2>&1 && left "bridge $BRIDGE"
    ip route show | grep -q "$SVC_CIDR" && left "route $SVC_CIDR"
    ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && left "kubepods cgroups"
    ipt_snapshot | diff "$S/snap/iptables" - >&2 || left "iptables differ from the snapshot up took"
    for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done | diff "$S/snap/sysctl" - >&2 || left "sysctls differ"
    if [ $bad != 0 ]; then
        log "down is incomplete; the state stays in $S"
        return 1
    fi
    rm -rf "$S"
    log "down: nothing of the lab is left"
}

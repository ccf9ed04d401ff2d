#!/bin/sh
# A real single-node Kubernetes 1.20 cluster on this machine, no mocks, for tests, benchmarks and
# trying stalewatch the way users run it:
#   scripts/lab-cluster.sh up [--no-deploy | --helm]   # cluster, Prometheus, Alertmanager, mirror; stalewatch
#   scripts/lab-cluster.sh deploy [--helm]             # (re)deploy stalewatch on a running lab
#   scripts/lab-cluster.sh status                      # the four lines again, and what runs
#   scripts/lab-cluster.sh down                        # everything stopped, the host as it was
# `up` prints KUBECONFIG=, CONTAINERD_ADDRESS=, PROMETHEUS_URL=, ALERTMANAGER_URL= (and a few
# more) on stdout once the node is Ready; progress goes to stderr. It is idempotent: a healthy lab
# is reported, not started twice. docs/lab-cluster.md lists every non-default flag and why.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
. "$HERE/lab/lib.sh"

report() {
    printf 'KUBECONFIG=%s\nCONTAINERD_ADDRESS=%s\nPROMETHEUS_URL=%s\nALERTMANAGER_URL=%s\n' \
        "$S/admin.kubeconfig" /run/containerd/containerd.sock "http://127.0.0.1:$PROM_PORT" "http://127.0.0.1:$AM_PORT"
    printf 'ALERT_WEBHOOK_LOG=%s\nMIRROR_URL=%s\nAPISERVER=%s\nNODE=%s\nHOST_IP=%s\nREGISTRY_HOSTS_DIR=%s\n' \
        "$S/alerts.jsonl" "http://$(host_ip):$MIRROR_PORT" "https://$(host_ip):$API_PORT" "$NODE" "$(host_ip)" "$S/certs.d"
}
node_ready() { $K get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
healthy() {
    for n in $COMPONENTS; do alive "$n" || return 1; done
    node_ready
}

# What `up` needs beyond the Kubernetes binaries: Debian packages, installed when missing.
install_needs() {
    need=""
    for pair in containerd:containerd runc:runc ctr:containerd iptables:iptables ip:iproute2 ss:iproute2 \
        openssl:openssl prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
        buildah:buildah python3:python3 curl:curl; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
    done
    [ -x "$CNI_BIN/bridge" ] || need="$need containernetworking-plugins"
    python3 -c 'import yaml' 2>/dev/null || need="$need python3-yaml"
    [ -z "$need" ] && return 0
    log "installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
}

# Refuses to start next to anything that looks like another cluster.
preflight() {
    for p in $PORTS; do
        ss -Htln "sport = :$p" | grep -q . && die "port $p is in use: another cluster running?"
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists: another lab? (scripts/lab-cluster.sh down)"
    [ -d /sys/fs/cgroup/memory/kubepods ] && die "cgroup kubepods exists: another kubelet runs here"
    [ -e /run/containerd/containerd.sock ] && die "/run/containerd/containerd.sock exists: another containerd runs here"
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
        [ -x "$BIN/$b" ] || die "missing $BIN/$b (scripts/kube-build.sh)"
    done
    [ -s "$PAUSE_TAR" ] || die "missing $PAUSE_TAR (scripts/kube-build.sh)"
}

snapshot_host() {
    mkdir -p "$S/pids" "$S/logs" "$S/pki" "$S/snap" "$S/cni"
    for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$S/snap/sysctl"
    ipt_snapshot >"$S/snap/iptables"
    for d in $HOST_DIRS /var/lib/containerd /var/lib/stalewatch; do [ -e "$d" ] || echo "$d"; done >"$S/snap/absent-dirs"
    ls /run/netns 2>/dev/null >"$S/snap/netns" || true
}

# One throw-away CA; the apiserver's certificate names every address pods and clients use (the
# host's address is the `kubernetes` Service's endpoint); a static token per component.
make_pki() {
    ip=$1
    (
        cd "$S/pki"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=stalewatch-lab-ca -keyout ca.key -out ca.crt 2>/dev/null
        cert() {
            openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
        }
        cert apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:$ip,IP:$SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
        cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    )
    # (file, user, group): the kube-proxy user is bound to system:node-proxier by the default
    # RBAC; the kubelet's name and group are what the Node authorizer expects.
    for who in "admin admin system:masters" "kcm system:kube-controller-manager" "scheduler system:kube-scheduler" \
        "proxy system:kube-proxy" "kubelet system:node:$NODE system:nodes" "prometheus prometheus system:masters"; do
        set -- $who
        t=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
        echo "$t,$2,$2${3:+,\"$3\"}" >>"$S/pki/tokens.csv"
        echo "$t" >"$S/pki/$1.token"
        cat >"$S/$1.kubeconfig" <<Y
apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$S/pki/ca.crt"}}]
users: [{name: u, user: {token: "$t"}}]
contexts: [{name: lab, context: {cluster: lab, user: u}}]
current-context: lab
Y
    done
}

write_configs() {
    ip=$1
    # One bridge; pods are routed only to the Service range and to the host: their traffic
    # never leaves the machine (no default route, no masquerade).
    cat >"$S/cni/10-stalewatch-lab.conflist" <<J
{"cniVersion": "0.4.0", "name": "$CNI_NET", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$S/cni-ipam",
            "routes": [{"dst": "$SVC_CIDR"}, {"dst": "$ip/32"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
J
    # containerd at the standard paths (as on AKS), its CRI plugin on, in the host's mount
    # namespace with the kubelet (the kubelet's tmpfs mounts must be visible to containers).
    cat >"$S/containerd.toml" <<T
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$S/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    discard_unpacked_layers = $LAB_DISCARD_LAYERS
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$S/certs.d"
T
    # Registries the kubelet may pull from over plain HTTP: a hosts.toml per host under
    # certs.d (REGISTRY_HOSTS_DIR), read by containerd at every pull.
    mkdir -p "$S/certs.d"
    # The lab serves the shared OSV export as a mirror (the agent never needs the internet), or
    # the directory STALEWATCH_LAB_OSV names (a test's feed, in the bucket's layout), and CISA's
    # KEV catalog beside it as deploy/mirror lays it out (kev/…). No EPSS file is public data
    # here: the lab's agents run with EPSS off.
    rm -rf "$S/mirror" && mkdir -p "$S/mirror/kev"
    for e in "${STALEWATCH_LAB_OSV:-$SHARED/osv}"/*; do ln -s "$(realpath "$e")" "$S/mirror/"; done
    ln -s "$SHARED/kev/known_exploited_vulnerabilities.json" "$S/mirror/kev/"
}

start_control_plane() {
    ip=$1
    P=$S/pki
    # The agent mounts the containerd root with HostToContainer propagation (snapshots of lazy
    # pulls appear after it starts), which the CRI plugin allows only from a shared or slave
    # mount: systemd makes / shared on real nodes; this machine's / is private, so the lab
    # makes /var/lib/containerd a shared mount of its own (`down` unmounts it).
    mkdir -p /var/lib/containerd
    if ! grep -q " /var/lib/containerd .*shared:" /proc/self/mountinfo; then
        mount -n --bind /var/lib/containerd /var/lib/containerd
        mount -n --make-shared /var/lib/containerd
    fi
    # containerd 1.7 by default (Debian 13's, scripts/containerd-fetch.sh): the newest series
    # whose CRI still serves v1alpha2, which the 1.20 kubelet speaks; its shims first on PATH.
    case $LAB_CONTAINERD in
        1.6) start containerd containerd --config "$S/containerd.toml" ;;
        *) dir=$("$HERE/containerd-fetch.sh" "$LAB_CONTAINERD" | awk '{print $3}')
           log "containerd $("$dir/containerd" --version | awk '{print $3}') from $dir"
           start containerd env PATH="$dir:$PATH" "$dir/containerd" --config "$S/containerd.toml" ;;
    esac
    start etcd "$ETCD" --name lab --data-dir "$S/etcd" --listen-metrics-urls= \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="lab=http://127.0.0.1:$ETCD_PEER_PORT"
    wait_for 30 ctr --address /run/containerd/containerd.sock version || fail containerd
    $CTR images import "$PAUSE_TAR" >/dev/null || fail containerd
    start apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --advertise-address="$ip" --secure-port="$API_PORT" --service-cluster-ip-range="$SVC_CIDR" \
        --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
        --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC \
        --service-account-issuer=https://kubernetes.default.svc --service-account-signing-key-file="$P/sa.key" \
        --service-account-key-file="$P/sa.pub" --api-audiences=https://kubernetes.default.svc \
        --kubelet-client-certificate="$P/kubelet-client.crt" --kubelet-client-key="$P/kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP,Hostname --cert-dir="$S/apiserver-certs"
    wait_for 90 $K get --raw /readyz || fail apiserver
    log "apiserver ready"
    start kcm "$BIN/kube-controller-manager" --kubeconfig="$S/kcm.kubeconfig" \
        --authentication-kubeconfig="$S/kcm.kubeconfig" --authorization-kubeconfig="$S/kcm.kubeconfig" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
        --cert-dir="$S/kcm-certs" --flex-volume-plugin-dir="$S/kcm-flex"
    start scheduler "$BIN/kube-scheduler" --kubeconfig="$S/scheduler.kubeconfig" \
        --authentication-kubeconfig="$S/scheduler.kubeconfig" --authorization-kubeconfig="$S/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false --cert-dir="$S/scheduler-certs"
}

start_node() {
    ip=$1
    P=$S/pki
    # kube-proxy first, so Service rules exist before any pod runs.
    start kube-proxy "$BIN/kube-proxy" --kubeconfig="$S/proxy.kubeconfig" --proxy-mode=iptables \
        --hostname-override="$NODE" --bind-address="$ip" --cluster-cidr="$POD_CIDR" \
        --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
        --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
    # Cluster DNS: the kube-dns Service (no selector) whose endpoint is dns.py on this host.
    start dns python3 "$HERE/lab/dns.py" --listen "$ip:53" --api-server "https://127.0.0.1:$API_PORT" \
        --ca "$P/ca.crt" --token-file "$P/admin.token"
    $K apply -f - >/dev/null <<Y || fail dns
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports: [{name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: kube-dns, namespace: kube-system}
subsets: [{addresses: [{ip: "$ip"}], ports: [{name: dns, port: 53, protocol: UDP}]}]
Y
    start kubelet "$BIN/kubelet" --kubeconfig="$S/kubelet.kubeconfig" \
        --hostname-override="$NODE" --node-ip="$ip" --root-dir="$S/kubelet" --cert-dir="$S/kubelet/pki" \
        --volume-plugin-dir="$S/kubelet/volume-plugins" --container-runtime=remote \
        --container-runtime-endpoint=unix:///run/containerd/containerd.sock --cgroup-driver=cgroupfs \
        --fail-swap-on=false --anonymous-auth=false --client-ca-file="$P/ca.crt" --authorization-mode=Webhook \
        --pod-infra-container-image="$PAUSE_IMAGE" --oom-score-adj=0 \
        --eviction-hard='memory.available<100Mi,nodefs.available<1%,imagefs.available<1%' \
        --image-gc-high-threshold=99 --image-gc-low-threshold=98 --read-only-port=0 \
        --healthz-bind-address=127.0.0.1 --cluster-dns="$DNS_IP" --cluster-domain=cluster.local
    wait_for 120 node_ready || fail kubelet
    wait_for 60 $K -n default get serviceaccount default || fail kcm
    wait_for 60 sh -c "iptables -t nat -S KUBE-SERVICES | grep -qF $SVC_IP/32" || fail kube-proxy
    # Labelled as AKS labels a node of a real node image (the agent reads its Node at start).
    $K label --overwrite node "$NODE" "kubernetes.azure.com/node-image-version=$LAB_NODE_IMAGE" >/dev/null
    log "node $NODE Ready"
}

# Prometheus (discovering pods as the PodMonitor says, with the shipped rules), Alertmanager
# routing to a webhook receiver that logs every notification, and the OSV mirror.
start_observability() {
    ip=$1
    mkdir -p "$S/prometheus" "$S/alertmanager"
    python3 "$HERE/lab/prometheus_config.py" --podmonitor "$REPO/deploy/base/podmonitor.yaml" \
        --rules "$REPO/deploy/base/prometheusrule.yaml" --out "$S/prometheus" \
        --pod-sd "http://127.0.0.1:$SD_PORT/targets" --alertmanager "127.0.0.1:$AM_PORT" || fail prometheus
    start pod-sd python3 "$HERE/lab/pod_sd.py" --listen "127.0.0.1:$SD_PORT" --api-server "https://127.0.0.1:$API_PORT" \
        --ca "$S/pki/ca.crt" --token-file "$S/pki/prometheus.token"
    cat >"$S/alertmanager/alertmanager.yml" <<Y
route:
  receiver: lab-webhook
  group_by: [alertname, namespace, pod, container, image]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: lab-webhook
    webhook_configs:
      - url: http://127.0.0.1:$WEBHOOK_PORT/alerts
        send_resolved: true
Y
    start webhook python3 "$HERE/lab/webhook.py" --listen "127.0.0.1:$WEBHOOK_PORT" --log "$S/alerts.jsonl"
    start mirror python3 -m http.server --bind "$ip" --directory "$S/mirror" "$MIRROR_PORT"
    start alertmanager prometheus-alertmanager --config.file="$S/alertmanager/alertmanager.yml" \
        --storage.path="$S/alertmanager/data" --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
    start prometheus prometheus --config.file="$S/prometheus/prometheus.yml" --storage.tsdb.path="$S/prometheus/data" \
        --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle
    wait_for 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" || fail prometheus
    wait_for 30 curl -sf "http://127.0.0.1:$AM_PORT/-/ready" || fail alertmanager
    wait_for 15 curl -sf "http://$ip:$MIRROR_PORT/index.json" || fail mirror
    # The Prometheus Operator's CRDs, so PodMonitor and PrometheusRule apply as written. 1.20's
    # API server reads a string property's `default: ""` as null and refuses the CRD (fixed in
    # 1.21): the lab drops those defaults (a secret or config map reference's empty name), the
    # one change to the operator's files (docs/lab-cluster.md).
    for crd in "$SHARED"/k8s-crds/monitoring.coreos.com_*.yaml; do
        sed '/^ *default: ""$/d' "$crd" | $K apply --server-side -f - >/dev/null
    done
    log "Prometheus, Alertmanager, the mirror and the operator's CRDs ready"
}

# The ecosystems the lab's upstream mirror holds, comma-separated (what the chart's mirror syncs).
lab_ecosystems() {
    for d in "$S/mirror"/*/all.zip; do basename "$(dirname "$d")"; done | paste -sd, -
}

deploy() {
    how=$1
    ip=$2
    "$HERE/build-image.sh" --import "$CTR"
    case "$how" in
        helm)
            "$HERE/lab/helm.sh" upgrade --install stalewatch "$REPO/deploy/helm/stalewatch" --namespace stalewatch \
                --create-namespace --kubeconfig "$S/admin.kubeconfig" -f "$REPO/deploy/lab/values.yaml" \
                --set mirror.enabled=true --set mirror.persistence=false --set mirror.upstream="http://$ip:$MIRROR_PORT" \
                --set mirror.ecosystems="{$(lab_ecosystems)}" --set mirror.epssUpstream=off \
                --set mirror.kevUpstream="http://$ip:$MIRROR_PORT/kev/known_exploited_vulnerabilities.json" \
                --set agent.advisoryRefresh=20s --set agent.epssSource=off --set agent.staleMinSeverity=unknown \
                --set agent.driftInterval="${STALEWATCH_LAB_DRIFT_INTERVAL:-5m}" >&2
            ;;
        kustomize)
            # The mirror's address is this host's: a generated ConfigMap patch on top of deploy/lab.
            mkdir -p "$S/deploy"
            # kubectl 1.20's kustomize takes relative bases only.
            cat >"$S/deploy/kustomization.yaml" <<Y
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
bases:
  - $(realpath --relative-to="$S/deploy" "$REPO/deploy/lab")
configMapGenerator:
  - name: stalewatch-config
    namespace: stalewatch
    behavior: merge
    literals:
      - STALEWATCH_ADVISORY_SOURCE=http://$ip:$MIRROR_PORT
      - STALEWATCH_KEV_SOURCE=http://$ip:$MIRROR_PORT/kev/known_exploited_vulnerabilities.json
      - STALEWATCH_EPSS_SOURCE=off
      # The lab's workloads are Alpine images, whose records carry no severity.
      - STALEWATCH_STALE_MIN_SEVERITY=unknown
      - STALEWATCH_DRIFT_INTERVAL=${STALEWATCH_LAB_DRIFT_INTERVAL:-5m}
Y
            $K apply -k "$S/deploy" >&2
            ;;
    esac
    wait_for 180 sh -c "$K -n stalewatch rollout status daemonset/stalewatch --timeout=5s" || fail kubelet
    log "stalewatch deployed ($how)"
}

up() {
    how=kustomize
    for a in "$@"; do
        case "$a" in
            --no-deploy) how=none ;;
            --helm) how=helm ;;
            *) die "unknown option $a (--no-deploy, --helm)" ;;
        esac
    done
    install_needs
    "$REPO/scripts/kube-build.sh" all
    if [ -d "$S" ]; then
        healthy && { log "already up"; report; exit 0; }
        die "a stale or half-started lab is in $S: run scripts/lab-cluster.sh down first"
    fi
    ip=$(host_ip)
    [ -n "$ip" ] || die "no IPv4 address on the default route's interface"
    preflight
    snapshot_host
    # A Service packet kube-proxy did not rewrite is dropped here, never routed off the host.
    ip route add blackhole "$SVC_CIDR"
    make_pki "$ip"
    write_configs "$ip"
    start_control_plane "$ip"
    start_node "$ip"
    start_observability "$ip"
    [ "$how" = none ] || deploy "$how" "$ip"
    report
}

status() {
    [ -d "$S" ] || {
        log "down"
        exit 1
    }
    for n in $COMPONENTS; do
        if alive "$n"; then log "$n: running (pid $(cat "$S/pids/$n"))"; else log "$n: NOT running"; fi
    done
    healthy && report
}

. "$HERE/lab/down.sh"

case "${1:-}" in
    up)
        shift
        up "$@"
        ;;
    down) down ;;
    status) status ;;
    deploy)
        healthy || die "the lab is not up (scripts/lab-cluster.sh up)"
        deploy "$([ "${2:-}" = --helm ] && echo helm || echo kustomize)" "$(host_ip)"
        report
        ;;
    *)
        echo "usage: $0 up [--no-deploy|--helm] | deploy [--helm] | down | status" >&2
        exit 2
        ;;
esac

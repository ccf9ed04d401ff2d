#!/bin/bash
# The built-in default: a private containerd with sample images and running containers, the
# stalewatch agent watching it against a local advisory mirror, and a readable summary of what
# it finds. Everything it starts is stopped and removed on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo
# A static busybox gives the sample image something to run.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
# STALEWATCH_DEMO_PROFILE=debug reuses the test build (CI does, to save a release build).
profile=${STALEWATCH_DEMO_PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release --locked --quiet
else
    cargo build --locked --quiet
fi
bin=$PWD/target/$profile/stalewatch
shared=$(cd .. && pwd)/shared/data

# STALEWATCH_DEMO_CONTAINERD=1.7 or 2 runs Debian 13's or unstable's containerd
# (scripts/containerd-fetch.sh unpacks it under /var/cache); Debian 12's 1.6 by default.
series=${STALEWATCH_DEMO_CONTAINERD:-1.6}
ctrd_bin=""
[ "$series" = 1.6 ] || ctrd_bin=$(./scripts/containerd-fetch.sh "$series" | awk '{print $3}')/
base=$(mktemp -d /tmp/stalewatch-demo.XXXXXX)
sock=$base/containerd.sock
ctrd_pid=""
agent_pid=""
ctrx() { nsenter -t "$ctrd_pid" -m "${ctrd_bin}ctr" -a "$sock" -n k8s.io "$@"; }
cleanup() {
    set +e
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    if [ -n "$ctrd_pid" ]; then
        for c in $(ctrx containers ls -q 2>/dev/null); do
            ctrx tasks kill -s SIGKILL "$c" >/dev/null 2>&1
            for _ in 1 2 3 4 5 6 7 8 9 10; do ctrx tasks delete "$c" >/dev/null 2>&1 && break; sleep 0.2; done
            ctrx containers delete "$c" >/dev/null 2>&1
        done
        kill "$ctrd_pid" 2>/dev/null
        wait "$ctrd_pid" 2>/dev/null
    fi
    rm -rf "$base"
}
trap cleanup EXIT INT TERM

echo "== starting a private containerd in $base"
mkdir -p "$base"/{root,state,run,opt}
if [ "$series" = 2 ]; then   # config version 3: the CRI plugin split into images and runtime
    cat > "$base/config.toml" <<TOML
version = 3
root = "$base/root"
state = "$base/state"
[grpc]
  address = "$sock"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$base/opt"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
TOML
else
    cat > "$base/config.toml" <<TOML
version = 2
root = "$base/root"
state = "$base/state"
[grpc]
  address = "$sock"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$base/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
TOML
fi
PATH="${ctrd_bin%/}${ctrd_bin:+:}$PATH" setsid unshare --mount --propagation private -- \
    sh -c "mount -n --bind '$base/run' /run && exec ${ctrd_bin}containerd --config '$base/config.toml'" \
    >"$base/containerd.log" 2>&1 </dev/null &
ctrd_pid=$!
for _ in $(seq 200); do "${ctrd_bin}ctr" -a "$sock" version >/dev/null 2>&1 && break; sleep 0.05; done
echo "   containerd $("${ctrd_bin}containerd" --version | awk '{print $3}')"

echo "== building and importing sample images"
image() { # NAME TAG LAYER-DIRS...
    local name=$1 tag=$2 layout=$base/img-$RANDOM; shift 2
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    for dir in "$@"; do umoci insert --image "$layout:$tag" "$dir" /; done
    tar -C "$layout" -cf "$layout.tar" .
    ctrx images import --base-name "$name" "$layout.tar" >/dev/null
    echo "   $name:$tag ($# layers)"
}
mkdir -p "$base/busybox/bin" && cp /bin/busybox "$base/busybox/bin/" && ln -s busybox "$base/busybox/bin/sleep"
image example.org/shop/checkout 1.4.2 "$base/busybox" samples/rootfs
# Microsoft's kinds of image (synthetic: none can be pulled here; real package names and
# versions): an Ubuntu 24.04 base, and an Azure Linux 3.0 distroless one (its rpm manifest).
image example.org/shop/payments 5.2.0 samples/ubuntu-24.04 "$base/busybox"
image example.org/shop/reports 1.0.3 samples/azurelinux-3.0 "$base/busybox"
if [ -d "$shared/rootfs/alpine" ]; then
    for v in 3.16.9 3.20.3; do
        mkdir -p "$base/alpine-$v" && tar -xzf "$shared/rootfs/alpine/alpine-minirootfs-$v-x86_64.tar.gz" -C "$base/alpine-$v"
    done
    # Two layers: an Alpine 3.16 base, then an application layer.
    mkdir -p "$base/app/srv" && echo "hello" > "$base/app/srv/index.html"
    image example.org/shop/legacy-api 2.0.0 "$base/alpine-3.16.9" "$base/app"
    image example.org/shop/frontend 3.1.0 "$base/alpine-3.20.3"
fi

echo "== starting containers (CRI labels as the kubelet sets them)"
run() { # ID IMAGE NAMESPACE POD CONTAINER
    ctrx run -d --null-io --label io.kubernetes.pod.namespace="$3" --label io.kubernetes.pod.name="$4" \
        --label io.kubernetes.container.name="$5" "$2" "$1" /bin/sleep 3600 >/dev/null
    echo "   $3/$4/$5 ← $2"
}
run checkout example.org/shop/checkout:1.4.2 shop checkout-7d9f checkout
run payments example.org/shop/payments:5.2.0 shop payments-6b7c payments
run reports example.org/shop/reports:1.0.3 analytics reports-0 reports
if [ -d "$shared/rootfs/alpine" ]; then
    run legacy example.org/shop/legacy-api:2.0.0 shop legacy-api-0 api
    run frontend example.org/shop/frontend:3.1.0 web frontend-5c4b nginx
fi

# Advisories: the full OSV mirror beside the project when present, else the bundled sample.
mirror=$shared/osv
if [ ! -f "$mirror/Alpine/all.zip" ]; then
    samples/make-image.sh "$base/sample" >/dev/null
    mirror=$base/sample/mirror
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
fport=$(free_port)
echo "== starting the agent (advisories from $mirror, metrics on 127.0.0.1:$port, findings on 127.0.0.1:$fport)"
"$bin" agent --containerd-address "$sock" --state-dir "$base/agent" --db-dir "$base/agent/db" \
    --advisory-source "$mirror" --ecosystem Alpine --ecosystem Ubuntu --ecosystem "Azure Linux" --listen "127.0.0.1:$port" --node-name demo-node \
    --findings-listen "127.0.0.1:$fport" --kube-events off \
    >"$base/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 300); do
    curl -sf "127.0.0.1:$port/readyz" >/dev/null 2>&1 && \
    ! curl -s "127.0.0.1:$port/metrics" | grep -q 'status="pending"' && break
    sleep 0.1
done

echo
curl -s "127.0.0.1:$fport/v1/findings" | python3 scripts/summary.py
echo
echo "== a few of the Prometheus series (curl 127.0.0.1:$port/metrics)"
curl -s "127.0.0.1:$port/metrics" | grep -E '^stalewatch_container_vulnerabilities\{.*fixable="true".*severity="unknown"' | head -3
curl -s "127.0.0.1:$port/metrics" | grep -E '^stalewatch_container_vulnerabilities\{.*fixable="true".*severity="(critical|high)"' | grep -v ' 0$' | head -4
curl -s "127.0.0.1:$port/metrics" | grep -E '^stalewatch_(container_oldest_fix_age_seconds|image_info)' | head -6

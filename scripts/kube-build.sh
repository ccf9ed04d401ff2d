#!/bin/sh
# Builds (or reuses) Kubernetes v1.20.2 from Debian bookworm's `kubernetes` source package (its
# vendored tree builds offline with Debian's Go 1.19) and Debian's etcd 3.4, for the tests' control
# plane and the lab cluster (scripts/lab-cluster.sh): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl, and the sandbox (pause) image built from the same
# tree's build/pause/linux/pause.c. Everything goes under $STALEWATCH_KUBE_LAB (default
# /var/cache/kube-lab); nothing is installed system-wide but the Debian packages it needs.
#   scripts/kube-build.sh            # everything
#   scripts/kube-build.sh apiserver  # only what the tests' control plane needs (kube-apiserver,
#                                    # kube-controller-manager, etcd)
# Cold: about 8 minutes on 2 cores for the control plane, a few more for the node binaries; a
# rerun with the binaries present takes a second.
set -eu
P=${STALEWATCH_KUBE_LAB:-/var/cache/kube-lab}
WHAT=${1:-all}
case "$WHAT" in
    apiserver) bins="kube-apiserver kube-controller-manager" ;;
    all) bins="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl" ;;
    *) echo "usage: $0 [all|apiserver]" >&2; exit 2 ;;
esac
# The tree vendors modern-go/reflect2 1.0.1, which Go 1.18 and later break: kube-apiserver
# built with Debian's Go 1.19 dies with "fatal error: fault" (mapiterinit) decoding the first
# custom resource. Binaries are rebuilt with Debian's reflect2 1.0.2 in the vendor tree; the
# stamp says which built binaries have it.
STAMP="$P/bin/.reflect2-1.0.2"
[ -e "$STAMP" ] || rm -f "$P"/bin/kube*
missing=""
for b in $bins; do [ -x "$P/bin/$b" ] || missing="$missing cmd/$b"; done
pause_missing=""
[ "$WHAT" = all ] && [ ! -s "$P/pause/pause.tar" ] && pause_missing=1
if [ -z "$missing" ] && [ -z "$pause_missing" ] && [ -x "$P/root/usr/bin/etcd" ]; then
    echo "kube-build: reusing $P" >&2
    exit 0
fi
# What the build itself needs on a fresh Debian 12 (make and rsync for the tree's makefiles, gcc
# for the static pause binary, buildah to package it).
need=""
tools="make:make gcc:gcc rsync:rsync"
[ -n "$pause_missing" ] && tools="$tools buildah:buildah"
for pair in $tools; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
# gcc -static links against glibc's static archive.
[ -n "$pause_missing" ] && [ ! -e /usr/lib/x86_64-linux-gnu/libc.a ] && need="$need libc6-dev"
if [ -n "$need" ]; then
    echo "kube-build: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
VERSION=1.20.5+really1.20.2-1.1+deb12u1
ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
mkdir -p "$P/apt/lists/partial" "$P/apt/cache/archives/partial" "$P/apt/sources" "$P/debs" "$P/src" "$P/root" "$P/bin" "$P/home"

# A private apt configuration: the machine's own Debian sources plus their source twins.
sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources >"$P/apt/sources/debian.sources"
: >"$P/apt/none.list"
cat >"$P/apt/apt.conf" <<CONF
Dir::Etc::SourceList "$P/apt/none.list";
Dir::Etc::SourceParts "$P/apt/sources";
Dir::State::Lists "$P/apt/lists";
Dir::Cache "$P/apt/cache";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$P/apt/apt.conf"
apt-get -q update >/dev/null

# Debian's Go and etcd, unpacked under $P/root (never installed): only what the build runs.
if [ ! -x "$P/root/usr/lib/go-1.19/bin/go" ] || [ ! -x "$P/root/usr/bin/etcd" ]; then
    (cd "$P/debs" && apt-get -q download golang-1.19-go golang-1.19-src etcd-server)
    for deb in "$P"/debs/golang-1.19-*.deb "$P"/debs/etcd-server_*.deb; do dpkg -x "$deb" "$P/root"; done
fi
if [ ! -d "$P/src/kubernetes-1.20.2" ]; then
    (cd "$P/src" && apt-get -q source --download-only "kubernetes=$VERSION")
    echo "$ORIG_SHA256  $P/src/kubernetes_1.20.5+really1.20.2.orig.tar.gz" | sha256sum -c - >&2
    tar -xzf "$P/src/kubernetes_1.20.5+really1.20.2.orig.tar.gz" -C "$P/src"
fi
SRC="$P/src/kubernetes-1.20.2"
if [ -n "$missing" ]; then
    R2="$SRC/vendor/github.com/modern-go/reflect2"
    if ! grep -q go1.18 "$R2"/*.go 2>/dev/null; then
        (cd "$P/debs" && apt-get -q download golang-github-modern-go-reflect2-dev >&2)
        rm -rf "$P/reflect2" && dpkg -x "$P"/debs/golang-github-modern-go-reflect2-dev_*.deb "$P/reflect2"
        rm -rf "$R2" && cp -r "$P/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2" "$R2"
    fi
    cd "$SRC"
    export GOROOT="$P/root/usr/lib/go-1.19" GOCACHE="$P/gocache" GOPROXY=off GOFLAGS= CGO_ENABLED=0 HOME="$P/home"
    export PATH="$GOROOT/bin:$P/root/usr/bin:$PATH"
    echo "kube-build: building$missing" >&2
    # shellcheck disable=SC2086
    make WHAT="$(echo $missing)" GOLDFLAGS="-s -w" >&2
    for b in $bins; do cp -f "_output/local/bin/linux/amd64/$b" "$P/bin/"; done
    touch "$STAMP"
    "$P/bin/kube-apiserver" --version >&2
    cd - >/dev/null
fi
if [ -n "$pause_missing" ]; then
    # The sandbox image: pause.c of the same tree, static (the image has no libc), one layer,
    # saved as a docker archive for `ctr images import`. Private buildah storage (vfs).
    mkdir -p "$P/pause/tmp"
    gcc -Os -static -o "$P/pause/pause" "$SRC/build/pause/linux/pause.c"
    B="buildah --root $P/pause/buildah --runroot $P/pause/run --storage-driver vfs"
    export TMPDIR="$P/pause/tmp"
    c=$($B from scratch)
    $B copy "$c" "$P/pause/pause" /pause >/dev/null
    $B config --entrypoint '["/pause"]' "$c"
    $B commit -q "$c" localhost/pause:3.4.1 >/dev/null
    $B rm "$c" >/dev/null
    $B push -q localhost/pause:3.4.1 "docker-archive:$P/pause/pause.tar.part:localhost/pause:3.4.1"
    mv "$P/pause/pause.tar.part" "$P/pause/pause.tar"
fi
echo "kube-build: ready in $P" >&2

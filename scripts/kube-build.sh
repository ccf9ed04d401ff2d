#!/bin/sh
# Builds (or reuses) the control plane the Kubernetes tests run against: kube-apiserver and
# kube-controller-manager v1.20.2 from Debian bookworm's `kubernetes` source package (its
# vendored tree builds offline with Debian's Go 1.19), and Debian's etcd 3.4. Everything goes
# under $STALEWATCH_KUBE_LAB (default /var/cache/kube-lab); nothing is installed system-wide.
# Cold: about 8 minutes on 2 cores; a rerun with the binaries present takes a second.
set -eu
P=${STALEWATCH_KUBE_LAB:-/var/cache/kube-lab}
if [ -x "$P/bin/kube-apiserver" ] && [ -x "$P/bin/kube-controller-manager" ] && [ -x "$P/root/usr/bin/etcd" ]; then
    echo "kube-apiserver: reusing $P" >&2
    exit 0
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

if [ ! -x "$P/root/usr/lib/go-1.19/bin/go" ] || [ ! -x "$P/root/usr/bin/etcd" ]; then
    (cd "$P/debs" && apt-get -q download golang-1.19-go golang-1.19-src etcd-server rsync)
    for deb in "$P"/debs/*.deb; do dpkg -x "$deb" "$P/root"; done
fi
if [ ! -d "$P/src/kubernetes-1.20.2" ]; then
    (cd "$P/src" && apt-get -q source --download-only "kubernetes=$VERSION")
    echo "$ORIG_SHA256  $P/src/kubernetes_1.20.5+really1.20.2.orig.tar.gz" | sha256sum -c - >&2
    tar -xzf "$P/src/kubernetes_1.20.5+really1.20.2.orig.tar.gz" -C "$P/src"
fi
cd "$P/src/kubernetes-1.20.2"
export GOROOT="$P/root/usr/lib/go-1.19" GOCACHE="$P/gocache" GOPROXY=off GOFLAGS= CGO_ENABLED=0 HOME="$P/home"
export PATH="$GOROOT/bin:$P/root/usr/bin:$PATH"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" GOLDFLAGS="-s -w" >&2
cp -f _output/local/bin/linux/amd64/kube-apiserver _output/local/bin/linux/amd64/kube-controller-manager "$P/bin/"
"$P/bin/kube-apiserver" --version >&2

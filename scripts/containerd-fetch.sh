#!/bin/sh
# Fetches the newer containerd series the tests run on, as Debian builds them, without
# installing them: Debian 13's 1.7 (trixie) and Debian unstable's 2.x (sid), each as the
# suite's current .deb (`apt-get download` with a private sources list), unpacked with
# `dpkg-deb -x` under /var/cache/stalewatch-containerd/<series>/ (they run on Debian 12 with
# its runc). Idempotent: a series already unpacked is kept.
#
#   scripts/containerd-fetch.sh [1.7] [2] [soci]  # prints "<series> <version> <bin dir>" per series
# `soci`: Debian 13's soci-snapshotter (the daemon and its CLI), a real lazy-pulling proxy
# snapshotter for the tests.
#
# apt serves only a suite's current version: when a suite no longer offers the series the
# tests expect, this fails loudly so the expectation is updated on purpose.
set -eu
cache=${STALEWATCH_CONTAINERD_CACHE:-/var/cache/stalewatch-containerd}
[ $# -gt 0 ] || set -- 1.7 2
for series in "$@"; do
    case $series in
        1.7) suite=trixie; expect='1.7.*'; package=containerd ;;
        2) suite=sid; expect='2.*'; package=containerd ;;
        soci) suite=trixie; expect='0.*'; package=soci-snapshotter ;;
        *) echo "containerd-fetch: unknown series $series (1.7, 2 or soci)" >&2; exit 2 ;;
    esac
    dir=$cache/$series
    if [ ! -f "$dir/VERSION" ]; then
        apt=$cache/apt-$suite
        mkdir -p "$apt/lists/partial" "$apt/archives/partial"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
            > "$apt/sources.list"
        opts="-o Dir::Etc::SourceList=$apt/sources.list -o Dir::Etc::SourceParts=/dev/null
              -o Dir::State::Lists=$apt/lists -o Dir::Cache=$apt -o APT::Sandbox::User=root"
        # shellcheck disable=SC2086
        apt-get -qq $opts update
        # shellcheck disable=SC2086
        version=$(apt-cache $opts show "$package" | sed -n 's/^Version: //p' | head -n 1)
        case $version in
            $expect) ;;
            *) echo "containerd-fetch: Debian $suite now offers $package $version, not $expect:" \
                    "update the series the tests expect (scripts/containerd-fetch.sh, docs/install.md)" >&2
               exit 1 ;;
        esac
        rm -f "$apt/${package}"_*.deb
        # shellcheck disable=SC2086
        (cd "$apt" && apt-get -qq $opts download "$package=$version")
        rm -rf "$dir" && mkdir -p "$dir"
        dpkg-deb -x "$apt/${package}"_*.deb "$dir/root"
        echo "$version" > "$dir/VERSION"
        echo "containerd-fetch: $package $version from Debian $suite in $dir" >&2
    fi
    echo "$series $(cat "$dir/VERSION") $dir/root/usr/bin"
done

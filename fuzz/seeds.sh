#!/bin/sh
# Writes seed inputs for the fuzz targets into fuzz/corpus/<target>/, made by the real tools
# where one runs here (dpkg, rpm, tar, gzip, zstd, umoci, go, jar, pip's dist-info, npm,
# rubygems, stalewatch's own `db update`) and by hand only for formats with no tool here
# (apk's installed database, .NET deps.json, KEV, EPSS, OpenVEX; real ids and names).
# Run once before a campaign; `cargo fuzz cmin` then keeps what adds coverage.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
c="$root/fuzz/corpus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed() { mkdir -p "$c/$1"; cat > "$c/$1/seed-$2"; }

# OS databases and release files, from the real package managers.
sh tests/fixtures/make-dpkg-root.sh "$tmp/deb" >/dev/null
seed dpkg_status status < "$tmp/deb/var/lib/dpkg/status"
seed dpkg_status list < "$(ls "$tmp"/deb/var/lib/dpkg/info/*.list | head -1)"
sh tests/fixtures/make-rpm-root.sh "$tmp/rpm-sqlite" sqlite >/dev/null
sh tests/fixtures/make-rpm-root.sh "$tmp/rpm-bdb" bdb >/dev/null
cp "$(find "$tmp/rpm-sqlite" -name rpmdb.sqlite | head -1)" "$tmp/rpmdb.sqlite"
sqlite3 "$tmp/rpmdb.sqlite" VACUUM
seed rpm_sqlite rpmdb < "$tmp/rpmdb.sqlite"
seed rpm_bdb packages < "$(find "$tmp/rpm-bdb" -name Packages | head -1)"
# One header blob, as the sqlite database stores it.
sqlite3 "$(find "$tmp/rpm-sqlite" -name rpmdb.sqlite | head -1)" \
    "SELECT writefile('$tmp/header', blob) FROM Packages LIMIT 1" >/dev/null
seed rpm_header blob < "$tmp/header"
sh tests/fixtures/make-rpm-root.sh "$tmp/azl" azurelinux >/dev/null
seed rpm_manifest azurelinux-3 < "$tmp/azl/distroless/var/lib/rpmmanifest/container-manifest-2"
# Chisel's manifest (no chisel tool here): the jsonwall Chisel documents, compressed by zstd.
printf '%s\n' '{"jsonwall":"1.0","schema":"1.0","count":2}' \
    '{"kind":"package","name":"libc6","version":"2.39-0ubuntu8.3","sha256":"00","arch":"amd64"}' \
    '{"kind":"slice","name":"libc6_libs"}' > "$tmp/manifest"
seed chisel_manifest plain < "$tmp/manifest"
zstd -q -c "$tmp/manifest" | seed chisel_manifest zstd
for f in /etc/os-release /usr/lib/os-release; do [ -f "$f" ] && seed os_release "$(basename "$(dirname "$f")")" < "$f"; done
printf 'ID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME="Alpine Linux v3.20"\n' | seed os_release alpine
# Ecosystem names and date-times as the data writes them (OSV's ecosystems list, records'
# published, a KEV release date, an image created with an offset).
for s in 'Ubuntu:Pro:22.04:LTS' 'Alpine:v3.20' 'PyPI' '2023-01-08T18:02:03.647787998-06:00' \
    '2024-05-01T12:00:00+02:00' '2026-01-01T00:00:00Z' '2023-03-07T00:00:00+0000'; do
    printf '%s' "$s" | seed names_and_times "$(printf '%s' "$s" | tr -c 'A-Za-z0-9' _)"
done
seed apk_installed installed <<'APK'
C:Q1Gn8ab0A3w6Zym0gMZ6DQQE6NUSw=
P:musl
V:1.2.5-r0
A:x86_64
S:411323
I:662528
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1712071181
c:ffa6dbf0c8ae9e9cf4fb9d1a6f6ec0f3a3e5c8d6
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1JGBxsZXMdw1rS9yUzO3/dn3/Nd0=

C:Q1Ad2Bd5qm7gUMCDeULbSEKdDqa2I=
P:busybox
V:1.36.1-r29
A:x86_64
o:busybox
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox
APK

# Layers: the dpkg root as plain, gzip and zstd tar, and one with a whiteout and an opaque dir.
tar -C "$tmp/deb" -cf "$tmp/layer.tar" var/lib/dpkg/status
seed tar_layer plain < "$tmp/layer.tar"
gzip -c "$tmp/layer.tar" | seed tar_layer gzip
zstd -q -c "$tmp/layer.tar" | seed tar_layer zstd
mkdir -p "$tmp/wh/etc/apk" "$tmp/wh/usr/lib"
: > "$tmp/wh/etc/.wh.os-release"
: > "$tmp/wh/usr/lib/.wh..wh..opq"
tar -C "$tmp/wh" -cf - etc usr | seed tar_layer whiteouts

# Advisories: records from the fixtures, their zip, and the index `db update` writes of them.
for f in tests/fixtures/osv/*.json; do seed osv_record "$(basename "$f" .json)" < "$f"; done
(cd tests/fixtures/osv && python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    [z.write(n) for n in sys.argv[2:]]' "$tmp/all.zip" ALPINE-*.json)
seed osv_zip alpine < "$tmp/all.zip"
mkdir -p "$tmp/mirror/Alpine" && cp "$tmp/all.zip" "$tmp/mirror/Alpine/all.zip"
target/debug/stalewatch db update --advisory-source "$tmp/mirror" --db-dir "$tmp/db" --ecosystem Alpine >/dev/null 2>&1
seed index_file alpine < "$(ls "$tmp"/db/*.idx | head -1)"

# Version triples, one line each (the target reads a, b, c).
printf '1:1.2-3\n1.2-3~rc1\n1.10\n' | seed version_order dpkg
printf '1.2.3-r0\n1.2.3_rc1-r1\n1.2.3a\n' | seed version_order apk
printf '2.28-225.el8\n2.28-189.5.el8_6\n1.0^git1\n' | seed version_order rpm
printf '1.2.3-beta.1+b\n1.2.3\nv1.10.0\n' | seed version_order semver
printf '1.0.post1\n1!2.0rc1\n1.0.dev3+local.7\n' | seed version_order pep440
printf '1.0-SNAPSHOT\n1.0.0.Final\n1-alpha-1\n' | seed version_order maven
printf '5.3.0-dev\n1.0.0-beta1\n1.0.0-p1\n' | seed version_order packagist

# Language manifests from packages installed here.
sed -n '1,/^$/p;/name = "serde"/,/^$/p' Cargo.lock | seed cargo_lock lock
for m in /usr/lib/python3/dist-packages/PyYAML-*.dist-info/METADATA /usr/lib/python3/dist-packages/PyJWT-*.egg-info/PKG-INFO; do
    [ -f "$m" ] && seed python_metadata "$(basename "$m")" < "$m"
done
npm_pkg=$(dirname "$(readlink -f "$(command -v npm)")")/../package.json
[ -f "$npm_pkg" ] && seed npm_package_json npm < "$npm_pkg"
lock=$(find /usr/share/go-* /usr/lib/ruby -name package-lock.json 2>/dev/null | head -1)
[ -n "$lock" ] && head -c 8192 "$lock" | seed npm_lock truncated && seed npm_lock lock < "$lock"
g=$(ls /usr/share/rubygems-integration/all/specifications/*.gemspec | head -1)
seed gemspec "$(basename "$g")" < "$g"
seed composer_installed installed <<'JSON'
{"packages": [{"name": "guzzlehttp/psr7", "version": "2.4.4", "version_normalized": "2.4.4.0", "type": "library"},
 {"name": "symfony/http-kernel", "version": "v6.2.5", "type": "library"}], "dev": true, "dev-package-names": []}
JSON
seed dotnet_deps deps <<'JSON'
{"runtimeTarget": {"name": ".NETCoreApp,Version=v6.0"}, "targets": {".NETCoreApp,Version=v6.0": {
 "app/1.0.0": {"dependencies": {"Newtonsoft.Json": "12.0.1"}}, "Newtonsoft.Json/12.0.1": {"runtime": {"lib/netstandard2.0/Newtonsoft.Json.dll": {}}}}},
 "libraries": {"app/1.0.0": {"type": "project"}, "Newtonsoft.Json/12.0.1": {"type": "package", "sha512": "sha512-x"}}}
JSON

# Binaries: a Go program's build info window and a cargo-auditable section.
mkdir -p "$tmp/go" && printf 'package main\nfunc main() {}\n' > "$tmp/go/main.go"
(cd "$tmp/go" && go mod init example.com/seed >/dev/null 2>&1 && CGO_ENABLED=0 go build -o seed . )
python3 - "$tmp/go/seed" "$c/go_buildinfo/seed-window" <<'PY'
import sys, os
b = open(sys.argv[1], "rb").read(); i = b.find(b"\xff Go buildinf:")
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
open(sys.argv[2], "wb").write(b"\0stalewatch:go-buildinfo\n" + b[i:i + 4096])
PY
python3 - "$c/cargo_auditable/seed-summary" <<'PY'
import sys, os, zlib, json
deps = {"packages": [{"name": "app", "version": "0.1.0", "source": "local", "root": True, "dependencies": [1]},
                     {"name": "smallvec", "version": "1.6.0", "source": "crates.io"}]}
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
open(sys.argv[1], "wb").write(b"\0stalewatch:cargo-auditable\n" + zlib.compress(json.dumps(deps).encode()))
PY

# A jar with Maven coordinates, as `jar` writes it.
mkdir -p "$tmp/jar/META-INF/maven/org.apache.logging.log4j/log4j-core"
printf 'groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n' \
    > "$tmp/jar/META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties"
printf 'Implementation-Title: log4j-core\nImplementation-Version: 2.14.1\n' > "$tmp/manifest"
(cd "$tmp/jar" && jar cfm "$tmp/seed.jar" "$tmp/manifest" META-INF/maven)
seed java_archive jar < "$tmp/seed.jar"

# An OCI layout from umoci: its index, manifest and config.
(cd "$tmp" && umoci init --layout oci >/dev/null && umoci new --image oci:seed >/dev/null)
seed oci_image index < "$tmp/oci/index.json"
for b in "$tmp"/oci/blobs/sha256/*; do seed oci_image "blob-$(basename "$b" | cut -c1-12)" < "$b"; done
printf '[{"Config":"blobs/sha256/abc","RepoTags":["app:1"],"Layers":["blobs/sha256/def"]}]' | seed oci_image docker-archive

# Triage feeds (formats as published; KEV entries are real, EPSS scores are test values).
seed kev_catalog catalog <<'JSON'
{"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2024.11.29", "dateReleased": "2024-11-29T17:32:19.3612Z", "count": 1,
 "vulnerabilities": [{"cveID": "CVE-2021-4034", "vendorProject": "Red Hat", "product": "Polkit", "vulnerabilityName": "Red Hat Polkit Out-of-Bounds Read and Write Vulnerability",
 "dateAdded": "2022-06-27", "shortDescription": "pkexec", "requiredAction": "Apply updates", "dueDate": "2022-07-18", "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": ["CWE-787"]}]}
JSON
printf '#model_version:v2023.03.01,score_date:2024-11-29T00:00:00+0000\ncve,epss,percentile\nCVE-2021-4034,0.5,0.9\nCVE-2014-6271,0.97,1.0\n' | seed epss_scores csv
seed openvex doc <<'JSON'
{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1", "author": "seed", "timestamp": "2024-11-29T00:00:00Z", "version": 1,
 "statements": [{"vulnerability": {"name": "CVE-2014-6271"}, "products": [{"@id": "pkg:oci/app@sha256%3Aabc", "subcomponents": [{"@id": "pkg:deb/debian/bash@4.2?arch=amd64"}]}],
 "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]}
JSON
echo "seeds written under fuzz/corpus/" >&2

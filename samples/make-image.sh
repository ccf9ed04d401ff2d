#!/bin/sh
# Builds the sample OCI image (umoci) and the sample OSV mirror into OUTDIR.
# Usage: samples/make-image.sh OUTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1
rm -rf "$out/image" "$out/mirror"
mkdir -p "$out/mirror/Alpine"
umoci init --layout "$out/image"
umoci new --image "$out/image:3.20-sample"
umoci insert --image "$out/image:3.20-sample" "$here/rootfs" /
python3 - "$here/advisories/Alpine" "$out/mirror/Alpine/all.zip" <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(src.glob("*.json")):
        z.write(p, p.name)
PY

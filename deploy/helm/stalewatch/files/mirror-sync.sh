#!/bin/sh
# Refreshes /data/<Ecosystem>/all.zip from $UPSTREAM with conditional requests (curl -z: only
# a newer file is downloaded), checks each zip before it replaces the served one.
set -eu
UPSTREAM=${UPSTREAM:-https://osv-vulnerabilities.storage.googleapis.com}
# $ECOSYSTEMS: OSV names separated by spaces, a space inside a name written %20.
for eco in $ECOSYSTEMS; do
    dir="/data/$(printf '%s' "$eco" | sed 's/%20/ /g')"; mkdir -p "$dir"
    url="$UPSTREAM/$eco/all.zip"
    tmp="$dir/all.zip.part"
    if [ -f "$dir/all.zip" ]; then
        code=$(curl -sS -L --fail -z "$dir/all.zip" -R -o "$tmp" -w '%{http_code}' "$url") || { echo "$eco: download failed" >&2; continue; }
    else
        code=$(curl -sS -L --fail -R -o "$tmp" -w '%{http_code}' "$url") || { echo "$eco: download failed" >&2; continue; }
    fi
    if [ "$code" = 304 ] || [ ! -s "$tmp" ]; then
        rm -f "$tmp"; echo "$eco: unchanged"; continue
    fi
    # A zip ends with its end-of-central-directory record: refuse a truncated download.
    if ! tail -c 22 "$tmp" | od -An -tx1 | tr -d ' \n' | grep -q '^504b0506'; then
        rm -f "$tmp"; echo "$eco: not a complete zip, keeping the previous one" >&2; continue
    fi
    mv "$tmp" "$dir/all.zip"; echo "$eco: updated"
done

#!/bin/sh
# Refreshes /data/<Ecosystem>/all.zip from $UPSTREAM with conditional requests (curl -z: only
# a newer file is downloaded), checks each zip before it replaces the served one. When every
# ecosystem was refreshed (updated or unchanged), writes the time in /data/stalewatch-sync.json
# (`{"synced_at": "<RFC 3339, UTC>"}`, beside ecosystems.txt): agents export it as
# stalewatch_advisory_source_synced_timestamp_seconds, the data's own age. Any failure keeps the
# previous time and makes the sync exit 1.
set -eu
failed=0
# Where the mirror serves from (the web server's root).
DATA=${DATA:-/data}
UPSTREAM=${UPSTREAM:-https://osv-vulnerabilities.storage.googleapis.com}
# $ECOSYSTEMS: OSV names separated by spaces, a space inside a name written %20.
for eco in $ECOSYSTEMS; do
    dir="$DATA/$(printf '%s' "$eco" | sed 's/%20/ /g')"; mkdir -p "$dir"
    url="$UPSTREAM/$eco/all.zip"
    tmp="$dir/all.zip.part"
    if [ -f "$dir/all.zip" ]; then
        code=$(curl -sS -L --fail -z "$dir/all.zip" -R -o "$tmp" -w '%{http_code}' "$url") || { echo "$eco: download failed" >&2; failed=1; continue; }
    else
        code=$(curl -sS -L --fail -R -o "$tmp" -w '%{http_code}' "$url") || { echo "$eco: download failed" >&2; failed=1; continue; }
    fi
    if [ "$code" = 304 ] || [ ! -s "$tmp" ]; then
        rm -f "$tmp"; echo "$eco: unchanged"; continue
    fi
    # A zip ends with its end-of-central-directory record: refuse a truncated download.
    if ! tail -c 22 "$tmp" | od -An -tx1 | tr -d ' \n' | grep -q '^504b0506'; then
        rm -f "$tmp"; echo "$eco: not a complete zip, keeping the previous one" >&2; failed=1; continue
    fi
    mv "$tmp" "$dir/all.zip"; echo "$eco: updated"
done
if [ "$failed" = 0 ]; then
    printf '{"synced_at": "%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$DATA/stalewatch-sync.json.part"
    mv "$DATA/stalewatch-sync.json.part" "$DATA/stalewatch-sync.json"
fi
# The triage feeds beside OSV: CISA's KEV catalog and FIRST's EPSS scores, the same way.
KEV_UPSTREAM=${KEV_UPSTREAM:-https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json}
EPSS_UPSTREAM=${EPSS_UPSTREAM:-https://epss.cyentia.com/epss_scores-current.csv.gz}
feed() { # name url file check
    mkdir -p "$DATA/$1"; out="$DATA/$1/$3"; tmp="$out.part"
    if [ -f "$out" ]; then z="-z $out"; else z=""; fi
    # shellcheck disable=SC2086
    code=$(curl -sS -L --fail $z -R -o "$tmp" -w '%{http_code}' "$2") || { echo "$1: download failed" >&2; failed=1; return 0; }
    if [ "$code" = 304 ] || [ ! -s "$tmp" ]; then rm -f "$tmp"; echo "$1: unchanged"; return 0; fi
    if ! $4 "$tmp"; then rm -f "$tmp"; echo "$1: malformed, keeping the previous one" >&2; failed=1; return 0; fi
    mv "$tmp" "$out"; echo "$1: updated"
}
# The agents parse them in full; the mirror only refuses what is plainly not the file.
kev_ok() { grep -q '"catalogVersion"' "$1" && tail -c 64 "$1" | grep -q '}'; }
epss_ok() { head -c 2 "$1" | od -An -tx1 | tr -d ' \n' | grep -q '^1f8b'; }
[ "$KEV_UPSTREAM" = off ] || feed kev "$KEV_UPSTREAM" known_exploited_vulnerabilities.json kev_ok
[ "$EPSS_UPSTREAM" = off ] || feed epss "$EPSS_UPSTREAM" epss_scores-current.csv.gz epss_ok
exit "$failed"

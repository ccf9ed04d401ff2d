#!/bin/sh
# The built-in default: builds stalewatch, builds the bundled sample image (an Alpine 3.20
# base behind on updates) and a mirror of real Alpine advisories for it, updates the
# advisory database from that mirror, and scans the image.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked --quiet
out=${DEMO_DIR:-target/demo}
mkdir -p "$out"
samples/make-image.sh "$out" >/dev/null
bin=target/release/stalewatch
echo "== stalewatch db update (sample mirror: $out/mirror)"
"$bin" db update --advisory-source "$out/mirror" --db-dir "$out/db" --ecosystem Alpine
"$bin" db status --db-dir "$out/db"
echo
echo "== stalewatch scan oci:$out/image"
set +e
"$bin" scan "oci:$out/image" --db-dir "$out/db" --fail-on unknown
code=$?
set -e
echo
echo "exit status $code (1 = findings at or above --fail-on)"
[ "$code" -le 1 ]

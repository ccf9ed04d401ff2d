#!/bin/sh
# Runs every fuzz target for SECONDS each (cargo-fuzz, libFuzzer, the nightly toolchain):
#   scripts/fuzz.sh SECONDS [TARGET …]      AddressSanitizer build (the campaign)
#   STALEWATCH_FUZZ_SANITIZER=none scripts/fuzz.sh 3   no sanitizer (CI's smoke run: builds fast)
#   STALEWATCH_FUZZ_MINIMISE=1 scripts/fuzz.sh …        after each clean run, fold what it found
#                                                        into fuzz/corpus/<target> (cargo fuzz cmin)
# Each run resumes from fuzz/corpus/<target>/ (committed, minimised with `cargo fuzz cmin`;
# fuzz/seeds.sh makes the seeds with the real tools); new inputs go to fuzz/work/<target>/
# (not committed). Limits:
# 256 MiB RSS, 10 s per input. Exits non-zero on any crash, leak, timeout or OOM and prints
# where the reproducer is; executions and coverage of each target go to fuzz/work/stats.tsv
# (this run) and fuzz/work/history.tsv (every run, dated: a campaign in pieces adds them up).
set -eu
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET …]}
shift
sanitizer=${STALEWATCH_FUZZ_SANITIZER:-address}
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is missing (cargo-fuzz needs it; no other toolchain can be fetched here)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cd fuzz
cargo +nightly fuzz build -s "$sanitizer" >&2
targets=${*:-$(cargo +nightly fuzz list)}
mkdir -p work
: > work/stats.tsv
failed=""
for t in $targets; do
    mkdir -p "corpus/$t" "work/$t" "artifacts/$t"
    if [ -z "$(ls -A "corpus/$t")" ]; then
        echo "fuzz.sh: fuzz/corpus/$t is empty: run fuzz/seeds.sh first (real-format seeds)" >&2
    fi
    dict=""
    [ -f "dict/$t.dict" ] && dict="-dict=dict/$t.dict"
    log="work/$t.log"
    # shellcheck disable=SC2086
    if cargo +nightly fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=256 -timeout=10 -print_final_stats=1 $dict \
        >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed="$failed $t"
        echo "fuzz.sh: $t FAILED; the reproducer is in fuzz/artifacts/$t/:" >&2
        ls "artifacts/$t" >&2 || true
        grep -E "ERROR|panicked|SUMMARY" "$log" | head -5 >&2 || true
    fi
    if [ "$status" = ok ] && [ "${STALEWATCH_FUZZ_MINIMISE:-0}" = 1 ]; then
        cp -n "work/$t"/* "corpus/$t/" 2>/dev/null || true
        cargo +nightly fuzz cmin -s "$sanitizer" "$t" "corpus/$t" >"work/$t.cmin.log" 2>&1 ||
            { echo "fuzz.sh: cmin of $t failed (work/$t.cmin.log)" >&2; failed="$failed $t"; }
        rm -rf "work/$t" && mkdir "work/$t"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    printf '%s\t%s\t%s\t%s\n' "$t" "${execs:-0}" "${cov:-0}" "$status" | tee -a work/stats.tsv
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$sanitizer" "$t" "${execs:-0}" "${cov:-0}" "$status" >> work/history.tsv
done
if [ -n "$failed" ]; then
    echo "fuzz.sh: failing targets:$failed" >&2
    exit 1
fi
echo "fuzz.sh: every target ran ${secs}s without a crash" >&2

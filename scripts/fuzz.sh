#!/bin/sh
# Runs every fuzz target for SECONDS each (cargo-fuzz, libFuzzer, the nightly toolchain):
#   scripts/fuzz.sh SECONDS [TARGET …]      AddressSanitizer build (the campaign)
#   STALEWATCH_FUZZ_SANITIZER=none scripts/fuzz.sh 3   no sanitizer (CI's smoke run: builds fast)
#   STALEWATCH_FUZZ_MINIMISE=1 scripts/fuzz.sh …        after each clean run, fold what it found
#                                                        into fuzz/corpus/<target>, minimised
# Each run resumes from fuzz/corpus/<target>/ (committed, minimised by libFuzzer's set-cover merge;
# fuzz/seeds.sh makes the seeds with the real tools); new inputs go to fuzz/work/<target>/
# (not committed). Limits: 256 MiB RSS (below for ASan), 10 s per input. Exits non-zero on
# any crash, leak, timeout or OOM and prints where the reproducer is; executions and coverage
# of each target go to fuzz/work/stats.tsv (this run) and fuzz/work/history.tsv (every run,
# dated: a campaign in pieces adds them up). STALEWATCH_FUZZ_TARGET_DIR=DIR builds there instead
# of fuzz/target (CI keeps it under /var/cache, so a warm run does not rebuild the targets).
set -eu
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET …]}
shift
sanitizer=${STALEWATCH_FUZZ_SANITIZER:-address}
# The memory bound is the program's: 256 MiB of RSS without a sanitizer. AddressSanitizer's
# shadow memory, quarantine and allocator caches triple a zip target's RSS (27 MiB live heap
# showed as 300 MiB), so under it the RSS limit is 768 MiB and no single allocation may pass
# 256 MiB; its quarantine is kept small (use-after-free detection stays).
if [ "$sanitizer" = none ]; then
    limits="-rss_limit_mb=256"
else
    limits="-rss_limit_mb=768 -malloc_limit_mb=256"
    export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16}"
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is missing (cargo-fuzz needs it; no other toolchain can be fetched here)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cd fuzz
# Every cargo fuzz call below gets the same build directory.
fuzz() {
    sub=$1
    shift
    cargo +nightly fuzz "$sub" ${STALEWATCH_FUZZ_TARGET_DIR:+--target-dir "$STALEWATCH_FUZZ_TARGET_DIR"} "$@"
}
fuzz build -s "$sanitizer" >&2
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
    if fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" $limits -timeout=10 -print_final_stats=1 $dict \
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
        # libFuzzer's set-cover merge: the fewest inputs that keep every feature of both.
        rm -rf "work/$t.min" && mkdir "work/$t.min"
        if fuzz run -s "$sanitizer" "$t" "work/$t.min" "corpus/$t" "work/$t" -- \
            -set_cover_merge=1 $limits >"work/$t.min.log" 2>&1; then
            rm -rf "corpus/$t" "work/$t" && mv "work/$t.min" "corpus/$t" && mkdir "work/$t"
        else
            echo "fuzz.sh: minimising $t failed (fuzz/work/$t.min.log)" >&2
            failed="$failed $t"
        fi
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

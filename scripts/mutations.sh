#!/bin/sh
# Shows that tests can fail: each mutation breaks one feature in the source, the test that
# guards it must then fail; the source is restored after every mutation (git checkout of the
# mutated file), whatever happens. Not part of .ci/run (each mutation rebuilds). Usage:
#   scripts/mutations.sh            # every mutation
#   scripts/mutations.sh NAME…      # some (names below)
# Exit 0 only if every mutation was caught; the summary says which survived.
set -u
cd "$(dirname "$0")/.."
export STALEWATCH_CONTAINERD=${STALEWATCH_CONTAINERD:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/mutations}

# name @ file @ perl substitution (applied once) @ test command
MUTATIONS='
told-once@src/agent/notify/mod.rs@s/\.filter\(\|e\| !self\.told\.sent\.contains_key\(&e\.id\)\)/.filter(|_| true)/@cargo test -q --test rebuild_signal a_rebuilt_base_is_told
sorted-findings@crates/stalewatch-core/src/matcher.rs@s/findings\.sort_by\(finding_order\);/let _ = finding_order;/@cargo test -q -p stalewatch-core --test matcher output_is_deterministic
runbook-anchor@deploy/prometheus/stalewatch-rules.yaml@s/docs\/alerts\.md#stalewatchstaleruntime/docs\/alerts.md#nowhere/@cargo test -q --test deploy every_alert_has_a_runbook
stale-digest@src/agent/inventory/running.rs@s/Some\(c\) if c != parent => \{\}/Some(_) => {}/@cargo test -q --test stale_digest
module-streams@crates/stalewatch-core/src/matcher.rs@s/if !module_applies\(/if false \&\& !module_applies(/@cargo test -q -p stalewatch-core --test matcher module_streams
healthz@src/agent/http.rs@s/match s\.heartbeat\.stuck\(\) \{/match None::<std::time::Duration> {/@cargo test -q --test faults wedged
sandboxed@src/agent/runtime_checks/mod.rs@s/if r\.sandboxed \{/if false \&\& r.sandboxed {/@cargo test -q --test busy_node a_sandboxed
'

want="$*"
mkdir -p "$(dirname "$CARGO_TARGET_DIR")"
rm -f "$CARGO_TARGET_DIR.survived"
echo "$MUTATIONS" | while IFS='@' read -r name file subst test; do
    [ -n "$name" ] || continue
    if [ -n "$want" ] && ! echo " $want " | grep -q " $name "; then continue; fi
    cp "$file" "$file.mutation-orig"
    perl -0pi -e "$subst" "$file"
    if cmp -s "$file" "$file.mutation-orig"; then
        echo "mutation $name: the pattern no longer matches $file (update this script)" >&2
        mv "$file.mutation-orig" "$file"
        echo "$name" >> "$CARGO_TARGET_DIR.survived"
        continue
    fi
    if sh -c "$test" >/dev/null 2>&1; then
        echo "mutation $name SURVIVED: $test passed with $file mutated" >&2
        echo "$name" >> "$CARGO_TARGET_DIR.survived"
    else
        echo "mutation $name caught by: $test" >&2
    fi
    mv "$file.mutation-orig" "$file"
done
if [ -s "$CARGO_TARGET_DIR.survived" ]; then
    echo "survived: $(tr '\n' ' ' < "$CARGO_TARGET_DIR.survived")" >&2
    rm -f "$CARGO_TARGET_DIR.survived"
    exit 1
fi
echo "every mutation was caught" >&2

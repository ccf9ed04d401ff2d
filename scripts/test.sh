#!/bin/sh
# The test command: installs what is missing, then runs every test of the workspace.
# A test whose tool is missing fails; STALEWATCH_ALLOW_MISSING_TOOLS=1 (never in CI) makes it
# a recorded skip instead, and the list is printed at the end.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The real control plane the Kubernetes tests use (built once, about 8 minutes cold).
./scripts/kube-build.sh apiserver
mkdir -p target
rm -f target/not-run.txt
status=0
# Every containerd-backed test on containerd 2.x (closest to what AKS ships); the lab
# cluster's kubelet (CRI v1alpha2) on 1.7 (tests/cluster.rs); a smoke set on Debian 12's 1.6.
for series in 1.6 1.7 2; do
    [ "$series" = 1.6 ] && v=$(containerd --version) || v=$(scripts/containerd-fetch.sh "$series")
    echo "test.sh: containerd $series: $v" >&2
done
STALEWATCH_CONTAINERD=2 cargo test --workspace --locked "$@" || status=$?
if [ $# -eq 0 ]; then
    # The smoke set on 1.6: inventory and re-match, a stale digest, discarded layer blobs.
    STALEWATCH_CONTAINERD=1.6 cargo test --locked --test agent --test stale_digest --test discarded_layers \
        -- agent_follows_containers a_tag_moved images_whose_layer_blobs a_cri_pull || status=$?
fi
if [ -s target/not-run.txt ]; then
    echo "test.sh: $(wc -l < target/not-run.txt) test(s) did NOT RUN (STALEWATCH_ALLOW_MISSING_TOOLS=1):" >&2
    sed 's/^/  /' target/not-run.txt >&2
else
    echo "test.sh: every test ran" >&2
fi
exit "$status"

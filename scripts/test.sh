#!/bin/sh
# The test command: installs what is missing, then runs every test of the workspace.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The real control plane the Kubernetes tests use (built once, about 8 minutes cold).
./scripts/kube-apiserver.sh
exec cargo test --workspace --locked "$@"

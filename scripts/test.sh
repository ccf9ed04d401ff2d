#!/bin/sh
# The test command: installs what is missing, then runs every test of the workspace.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), then the whole Cargo workspace,
# which includes the Node interop suite (stack/tests/interop.rs) against the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc

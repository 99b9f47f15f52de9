#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), checks formatting, lints and
# docs, then runs the whole Cargo workspace, which includes the Node interop suite
# (stack/tests/interop.rs) against the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build per run: incremental state would only add gigabytes to target/ (CI disks are small).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/setup.sh
echo "test: $(df -h --output=avail . | tail -1 | tr -d ' ') free on the disk of $(pwd)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# tests/examples_run.rs runs the example binaries: build them first (cargo test compiles
# examples but does not always leave them at target/debug/examples/<name>).
cargo build --workspace --examples
cargo test --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc

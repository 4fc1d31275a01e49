#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# Needs only a Rust toolchain (protoc is vendored by the build). Tests that
# mount a small tmpfs to fill a disk need root and say "skipped" without it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit, CEL and CRD
# drift, engine tables and properties, emulator conformance, CLI integration against the
# emulator). Needs only a Rust toolchain (>= 1.94.1); everything else is built by cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --no-fail-fast

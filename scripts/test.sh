#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the control-plane binaries, then every
# test (unit, CEL and CRD drift, engine tables and properties, emulator conformance, CLI
# integration against the emulator, end-to-end against a real kube-apiserver + etcd).
#
# Needs a Rust toolchain (>= 1.94.1) and Go (>= 1.26). The control-plane binaries (etcd,
# kube-apiserver, kubectl, helm) are built from source once and cached under
# ${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}: the first run pays ~10 minutes for them.
# moto (SQS / EventBridge for the event tests) is installed from PyPI into a venv cached there
# too (needs python3 with venv; ~35 s once).
# The static musl release build (the Dockerfile's build stage) is cached there too; it needs
# rustup (adds the musl target once) and Debian's musl-tools (installed when running as root).
# The cargo-fuzz targets run for REDRIVE_FUZZ_SECONDS (30) each with the nightly toolchain;
# cargo-fuzz and the fuzz build are cached there as well.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "cargo fmt --check"
cargo fmt --all -- --check

step "control-plane binaries (scripts/control-plane.sh install; cached after the first run)"
scripts/control-plane.sh install

step "moto, the third-party SQS / EventBridge of the event tests (scripts/moto.sh install; cached after the first run)"
REDRIVE_MOTO_SERVER=$(scripts/moto.sh install)
export REDRIVE_MOTO_SERVER

step "cargo clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --locked --workspace --no-fail-fast

step "cargo fuzz: policy documents and emulator requests, ${REDRIVE_FUZZ_SECONDS:-30} s each (scripts/fuzz.sh; build cached)"
scripts/fuzz.sh "${REDRIVE_FUZZ_SECONDS:-30}"

step "static musl release build: the Dockerfile's build stage without Docker (scripts/build-musl.sh)"
# Cached like the control plane, so only the first run pays the cold release build.
CARGO_TARGET_DIR="${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}/musl-target" scripts/build-musl.sh >/dev/null

step "done in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for a short time (issue 7, item 6): the RedrivePolicy
# reader of local mode (policy_document) and the emulator's request parser (emulator_request).
# The property tests in tests/reliability_input.rs cover the same entry points with generated
# inputs; libFuzzer adds coverage-guided mutation from the seeds in fuzz/seeds/.
#
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 30)
#
# - cargo-fuzz is installed once under ${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}/cargo-fuzz
#   (never in the repository); libFuzzer needs the nightly toolchain, installed if missing.
# - The fuzz build has its own target directory in the same cache, so reruns are incremental.
# - Built without a sanitizer (FUZZ_SANITIZER=address to change it): the code under test has no
#   `unsafe`, so a Rust panic (assertions in the targets, overflow checks from -a) is the oracle;
#   an AddressSanitizer build of kube + aws-sdk costs far more (see docs/reliability.md).
# - A crash (panic or failed property), an input slower than FUZZ_TIMEOUT seconds (default 10: a
#   hang) or memory above FUZZ_RSS_MB (default 2048) fails the run: exit 1, the path of the
#   reproducing input and the command that replays it (FUZZ_VERBOSE=1 shows each request/document).
# - The last lines give the executions per target (libFuzzer's final stats).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: $0 [seconds-per-target]" >&2
    exit 2
}
cache="${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}"
sanitizer="${FUZZ_SANITIZER:-none}"
timeout_s="${FUZZ_TIMEOUT:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"
codegen_units="${FUZZ_CODEGEN_UNITS:-1}" # cargo-fuzz's default; 16 was no faster cold on 2 cores
targets=(policy_document emulator_request)
toolchain=nightly

step() { printf '\n==> %s\n' "$*"; }

# cargo-fuzz: cached binary, installed from crates.io on first use.
export PATH="$cache/cargo-fuzz/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
    step "installing cargo-fuzz into $cache/cargo-fuzz (once)"
    cargo install cargo-fuzz --locked --root "$cache/cargo-fuzz"
fi

# libFuzzer's instrumentation needs nightly rustc flags.
if ! rustup run "$toolchain" rustc -V >/dev/null 2>&1; then
    step "installing the $toolchain toolchain (once)"
    rustup toolchain install "$toolchain" --profile minimal
fi

target_dir="$cache/fuzz-target"
host=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
build_flags=(--fuzz-dir fuzz --sanitizer "$sanitizer" --debug-assertions
    --codegen-units "$codegen_units" --target-dir "$target_dir")

# fuzz/Cargo.lock is committed: a build must not re-resolve it.
if ! cargo "+$toolchain" fetch --locked --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
    echo "fuzz/Cargo.lock is out of date (did the main crate's dependencies change?)." >&2
    echo "Refresh it with: cargo +$toolchain fetch --manifest-path fuzz/Cargo.toml, then commit it." >&2
    exit 1
fi

step "building the fuzz targets (sanitizer: $sanitizer, debug assertions on)"
started=$SECONDS
cargo "+$toolchain" fuzz build "${build_flags[@]}"
echo "built in $((SECONDS - started)) s"

logs="$target_dir/logs"
mkdir -p "$logs"
declare -A execs
failed=()
for t in "${targets[@]}"; do
    step "fuzzing $t for ${seconds} s"
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    # The committed seeds start (or top up) the ignored working corpus.
    cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    max_len=4096
    [[ "$t" == policy_document ]] && max_len=16384 # room for over-long values and keys
    log="$logs/$t.log"
    set +e
    cargo "+$toolchain" fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
        -malloc_limit_mb="$rss_mb" -max_len="$max_len" -dict="fuzz/dicts/$t.dict" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [[ -n "$n" ]] || n=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)
    execs[$t]="${n:-?}"
    if [[ $rc -ne 0 ]]; then
        failed+=("$t")
        echo "FAILED: $t (exit $rc); the report from $log:" >&2
        # From the panic or libFuzzer's error to its summary (the rest of the log is progress).
        sed -n '/panicked at\|ERROR: libFuzzer\|ERROR: AddressSanitizer/,/^SUMMARY/p' "$log" | head -n 60 >&2
        for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
            echo "artifact: $a" >&2
            echo "replay:   FUZZ_VERBOSE=1 $target_dir/$host/release/$t $a" >&2
        done
    else
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || true
    fi
done

step "executions per target (${seconds} s each)"
for t in "${targets[@]}"; do
    printf '%s: %s executions\n' "$t" "${execs[$t]}"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found a problem in: ${failed[*]}" >&2
    exit 1
fi

#!/bin/bash
# Build and run stowage's fuzz targets with libFuzzer on the stable toolchain (fuzz/README.md).
#
#   fuzz/run.sh build                      build every target (instrumented, release)
#   fuzz/run.sh run SECONDS [TARGET...]    fuzz each target SECONDS, keeping what it finds in
#                                          fuzz/corpus/TARGET (seeds: fuzz/seeds/TARGET)
#   fuzz/run.sh ci [SECONDS]               build, then each target SECONDS (default 5) from its
#                                          seeds in a scratch corpus; fails on any crash
#   fuzz/run.sh repro TARGET FILE...       run a target once on the given inputs
#
# 1. Instrumentation without nightly: rustc's stable `-C passes=sancov-module` with the
#    SanitizerCoverage options libFuzzer reads (inline 8-bit counters, PC table, compare
#    tracing), plus debug assertions and overflow checks, `--cfg fuzzing`; `--target` keeps
#    these flags off build scripts and proc macros. No sanitizer (they need nightly): Rust's
#    own bounds checks, overflow checks and panics are what crash.
# 2. libfuzzer-sys builds libFuzzer from its bundled C++ source (needs a C++ compiler).
# 3. A crash, panic, timeout (-timeout) or memory blow-up (-rss_limit_mb) stops the target
#    with a non-zero exit; the input is saved under fuzz/artifacts/TARGET/ and this script
#    exits non-zero after the remaining targets ran.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$PWD
HOST=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_DIR/target}"
BIN="$CARGO_TARGET_DIR/$HOST/release"
TARGETS=(reference manifest layer_tar tar_split tar_split_read registries_conf auth_json
         certs_d www_authenticate gvariant)

# Largest input per target: tars need room for a 10 KiB record; text formats stay small.
max_len() {
    case "$1" in
        layer_tar|tar_split) echo 32768 ;;
        manifest|certs_d|gvariant|tar_split_read) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

build() {
    local flags=(
        -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares
        --cfg fuzzing
        -Cdebug-assertions
        -Coverflow-checks
    )
    RUSTFLAGS="${flags[*]}" cargo build --release --locked --target "$HOST" --bins
}

# run_target TARGET SECONDS CORPUS_DIR: fuzz one target; returns libFuzzer's status.
run_target() {
    local t=$1 secs=$2 corpus=$3
    mkdir -p "$corpus" "artifacts/$t"
    local log="artifacts/$t/last-run.log"
    echo "fuzz: $t for ${secs}s (corpus $corpus, seeds seeds/$t)" >&2
    local status=0
    TMPDIR="$scratch/tmp" "$BIN/$t" "$corpus" "seeds/$t" \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $status); the input is in artifacts/$t/, log:" >&2
        tail -n 60 "$log" >&2
    else
        grep -E '^stat::(number_of_executed_units|new_units_added)|DONE' "$log" | tr '\n' ' ' >&2
        echo >&2
    fi
    return "$status"
}

cmd=${1:-}
case "$cmd" in
    build)
        build
        ;;
    run|ci)
        if [ "$cmd" = ci ]; then secs=${2:-5}; else secs=${2:?usage: fuzz/run.sh run SECONDS [TARGET...]}; fi
        shift $(( $# >= 2 ? 2 : $# ))
        targets=("$@")
        [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
        build
        failed=()
        # Scratch space: CI's throw-away corpora, and TMPDIR for the targets' temporary files
        # (extraction trees, certs.d and auth files), removed at the end.
        scratch=$(mktemp -d)
        trap 'rm -rf "$scratch"' EXIT
        mkdir -p "$scratch/tmp"
        for t in "${targets[@]}"; do
            if [ "$cmd" = ci ]; then corpus="$scratch/$t"; else corpus="corpus/$t"; fi
            run_target "$t" "$secs" "$corpus" || failed+=("$t")
        done
        [ ${#failed[@]} -eq 0 ] || echo "fuzz: crashes in: ${failed[*]}" >&2
        # The closing line, in the 'N passed, N failed' form: one per target, ${secs}s each.
        echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
        [ ${#failed[@]} -eq 0 ]
        ;;
    repro)
        t=${2:?usage: fuzz/run.sh repro TARGET FILE...}
        shift 2
        build
        "$BIN/$t" "$@"
        ;;
    *)
        sed -n '2,9p' "$0" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# Runs every fuzz target of rust/fuzz for a bounded time (default 60 s each)
# and fails if any target finds a crash.
#
#   benchmark/fuzz.sh [SECONDS]
#
# With a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`) it runs
# `cargo +nightly fuzz run` (AddressSanitizer, coverage-guided). Otherwise it
# builds the targets on stable (libfuzzer-sys builds there too, with libFuzzer's
# coverage instrumentation flags only; no sanitizer) and runs the binaries
# directly with -max_total_time. MMSB_FUZZ_MODE=stable forces the second way.
# Corpora live in rust/fuzz/corpus/<target> (not committed); crashes in
# rust/fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/../rust/fuzz"
secs=${1:-60}
targets=(delta_decode log_reader)
mode=${MMSB_FUZZ_MODE:-auto}
if [[ $mode == auto ]]; then
    if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
        mode=nightly
    else
        mode=stable
    fi
fi
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    printf '\n==> fuzz %s for %s s (%s)\n' "$t" "$secs" "$mode"
    if [[ $mode == nightly ]]; then
        set +e
        cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" \
            -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|stat::number_of_executed_units|Done )' || true
        rc=${PIPESTATUS[0]}
        set -e
    else
        # The coverage flags libFuzzer needs to make progress; no sanitizer (stable).
        # An explicit --target keeps RUSTFLAGS off build scripts and proc macros.
        host=$(rustc -vV | sed -n 's/^host: //p')
        RUSTFLAGS="${RUSTFLAGS:-} -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
            cargo build --release --locked --bin "$t" --target "$host" --target-dir target/stable-fuzz
        set +e
        "target/stable-fuzz/$host/release/$t" "corpus/$t" -max_total_time="$secs" \
            -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
        rc=$?
        set -e
        grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|stat::number_of_executed_units|Done )' "$log" || true
    fi
    if [[ $rc -ne 0 ]]; then
        echo "fuzz target $t FAILED (exit $rc); log tail:"
        tail -40 "$log"
        status=1
    else
        echo "fuzz target $t: no crash"
    fi
    rm -f "$log"
done
exit $status

#!/usr/bin/env bash
# Runs every test MMSB has, in the order CI runs them. Needs only the Rust
# toolchain, gcc, python3/pip and git; installs what else it needs (valgrind,
# the tree-sitter wheels for the Julia static check).
#
#   MMSB_CRASH_ITERS   crash-test iterations (default set by the test; CI keeps it small)
#   PROPTEST_CASES     property-test cases (default per test)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "rustfmt"
(cd rust && cargo fmt --all -- --check)

step "clippy (-D warnings)"
(cd rust && cargo clippy --workspace --all-targets --locked -- -D warnings)

step "rustdoc (-D warnings: broken or private intra-doc links, bad HTML)"
(cd rust && RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked)

step "cargo test (workspace)"
(cd rust && cargo test --workspace --locked)

step "GPU layer without a GPU: the check binary probes, reports unavailable, exits 2 (no panic)"
rc=0; rust/target/debug/mmsb-gpu-check "$(mktemp -d)" || rc=$?
[ "$rc" -eq 2 ] || { echo "mmsb-gpu-check exited $rc, expected 2 (no GPU here)"; exit 1; }

step "loom model check of the allocator's lock-free freelist (cfg loom, bounded preemptions)"
(cd rust && RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
    cargo test --locked -p mmsb-core --test loom_freelist)

step "release build (library, CLI)"
(cd rust && cargo build --release --locked -p mmsb-capi -p mmsb-cli)

step "fuzz targets build (stable; run them with benchmark/fuzz.sh)"
cargo build --manifest-path rust/fuzz/Cargo.toml --locked --bins

step "log benchmark smoke run (bench log --quick)"
rust/target/release/mmsb bench log --quick --out "$(mktemp -d)"

step "propagation benchmark smoke run (bench propagation --quick)"
rust/target/release/mmsb bench propagation --quick --out "$(mktemp -d)"

step "transaction benchmark smoke run (bench txn --quick)"
rust/target/release/mmsb bench txn --quick --out "$(mktemp -d)"
step "semiring benchmark smoke run (bench semiring --quick; GraphBLAS side skipped without its venv)"
rust/target/release/mmsb bench semiring --quick --out "$(mktemp -d)"

step "allocator benchmark smoke run (bench alloc --quick)"
rust/target/release/mmsb bench alloc --quick --out "$(mktemp -d)"

step "C ABI test under valgrind"
MMSB_LIB_DIR="$root/rust/target/release" bash test/c/run.sh

step "Julia package: generated bindings, static check"
MMSB_LIB="$root/rust/target/release/libmmsb.so" bash scripts/julia-check.sh

step "demo smoke run"
rust/target/release/mmsb demo --data-dir "$(mktemp -d)" --deltas 20000 --pages 8

printf '\nall tests passed in %ss\n' "$(( $(date +%s) - t0 ))"

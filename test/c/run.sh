#!/usr/bin/env bash
# Builds libmmsb, compiles test/c/test_capi.c, test_durable.c, test_propagation.c,
# test_gpu.c, test_txn.c, test_alloc.c and test_semiring.c against the header, links each
# against the shared library (rpath) and, as a second binary, the static library, runs them,
# then runs the shared ones under valgrind memcheck. Fails on any failed check or any
# valgrind error (including definite/indirect leaks).
#
# Usage: test/c/run.sh            (from any directory)
# Environment:
#   MMSB_LIB_DIR   use libmmsb.so / libmmsb.a from this directory instead of building
#   CARGO          cargo binary (default: cargo)
#   CC             C compiler (default: gcc)
#   MMSB_SKIP_VALGRIND=1  skip the valgrind run (not for CI)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$here/build"
include="$root/rust/mmsb-capi/include"
cc="${CC:-gcc}"
mkdir -p "$build"

step() { printf '\n== %s\n' "$*"; }

if [ -n "${MMSB_LIB_DIR:-}" ]; then
    libdir="$(cd "$MMSB_LIB_DIR" && pwd)"
    step "using the library in $libdir"
else
    step "cargo build --release -p mmsb-capi"
    (cd "$root/rust" && "${CARGO:-cargo}" build --release -p mmsb-capi)
    libdir="$(cd "$root/rust" && "${CARGO:-cargo}" metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    libdir="${libdir:-$root/rust/target}/release"
fi
for f in libmmsb.so libmmsb.a; do
    [ -f "$libdir/$f" ] || { echo "missing $libdir/$f" >&2; exit 1; }
done

version="$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$root/rust/Cargo.toml" | head -n 1)"
cflags=(-std=c11 -Wall -Wextra -Werror -g -O1 -pthread -I"$include")
[ -n "$version" ] && cflags+=("-DMMSB_EXPECTED_VERSION=\"$version\"")

tests=(test_capi test_durable test_propagation test_gpu test_txn test_alloc test_semiring)
for t in "${tests[@]}"; do
    step "compile $t (shared library, rpath $libdir)"
    "$cc" "${cflags[@]}" -o "$build/${t}_shared" "$here/$t.c" \
        -L"$libdir" -Wl,-rpath,"$libdir" -lmmsb -lpthread

    step "compile $t (static library)"
    # Rust static libraries need the C runtime libraries the Rust std uses.
    "$cc" "${cflags[@]}" -o "$build/${t}_static" "$here/$t.c" \
        "$libdir/libmmsb.a" -lpthread -ldl -lm -lrt -lgcc_s -lc
    if ldd "$build/${t}_static" | grep -q libmmsb; then
        echo "${t}_static is linked against the shared libmmsb" >&2
        exit 1
    fi
done

for t in "${tests[@]}"; do
    step "run ${t}_shared"
    "$build/${t}_shared"
    step "run ${t}_static"
    "$build/${t}_static"
done

if [ "${MMSB_SKIP_VALGRIND:-0}" = 1 ]; then
    step "valgrind skipped (MMSB_SKIP_VALGRIND=1)"
    exit 0
fi
if ! command -v valgrind >/dev/null 2>&1; then
    step "installing valgrind"
    if [ "$(id -u)" = 0 ]; then
        apt-get update && apt-get install -y valgrind
    else
        sudo apt-get update && sudo apt-get install -y valgrind
    fi
fi

for t in "${tests[@]}"; do
step "valgrind memcheck ${t}_shared"
# No suppressions are needed today (the registry and thread-local error strings are
# "still reachable", which is not an error). If one ever is, put it in
# test/c/valgrind.supp with a comment saying why; it is picked up automatically.
supp=()
[ -f "$here/valgrind.supp" ] && supp=(--suppressions="$here/valgrind.supp")
valgrind --tool=memcheck --fair-sched=yes --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-origins=yes --num-callers=30 "${supp[@]}" \
    --log-file="$build/valgrind_$t.log" "$build/${t}_shared" >"$build/valgrind_$t.out" 2>&1 || {
    rc=$?
    cat "$build/valgrind_$t.out"
    cat "$build/valgrind_$t.log"
    echo "valgrind failed on $t (exit $rc); log in $build/valgrind_$t.log" >&2
    exit 1
}
tail -n 1 "$build/valgrind_$t.out"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$build/valgrind_$t.log" || true
done
echo
echo "test/c: all passed (shared, static, valgrind)"

#!/usr/bin/env bash
# Runs every CPU benchmark of `mmsb bench` (propagation, alloc, txn, log,
# semiring) into one directory, on this machine or on a lent machine without a
# Rust toolchain (bring a release `mmsb` binary and, for the GraphBLAS
# yardstick offline, the suitesparse-graphblas, cffi and pycparser wheels).
#
#   bash benchmark/cpu/run.sh OUT_DIR [NOTE]
#
# Environment:
#   MMSB_BIN      the mmsb binary (default rust/target/release/mmsb)
#   MMSB_WHEELS   a directory of wheels to install offline for the GraphBLAS
#                 side (into a private --target directory, no dependencies:
#                 numpy must already be importable by python3)
#   MMSB_ONLY     space-separated subset of: propagation alloc txn log semiring
# Each benchmark writes OUT_DIR/<name>.json naming the machine; NOTE (say how
# loaded or quiet the machine was) goes into the benchmarks that take --note.
# Exit status: non-zero if any benchmark failed (the others still run).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: run.sh OUT_DIR [NOTE]}
note=${2:-}
bin=${MMSB_BIN:-$root/rust/target/release/mmsb}
mkdir -p "$out"
if [ -n "${MMSB_WHEELS:-}" ]; then
  gb=$(mktemp -d)/gbpy
  if pip install -q --no-index --no-deps --target "$gb" "$MMSB_WHEELS"/*.whl; then
    export PYTHONPATH="$gb${PYTHONPATH:+:$PYTHONPATH}"
    export MMSB_GRAPHBLAS_PYTHON=${MMSB_GRAPHBLAS_PYTHON:-$(command -v python3)}
  else
    echo "installing the GraphBLAS wheels failed: the mxv yardstick will be skipped"
  fi
fi
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
for b in ${MMSB_ONLY:-propagation alloc txn log semiring}; do
  echo "== mmsb bench $b"
  start=$(date +%s)
  case $b in
    propagation) args=(--out "$out" ${note:+--note "$note"}) ;;
    alloc) args=(--out "$out" ${note:+--note "$note"}) ;;
    *) args=(--out "$out") ;;
  esac
  "$bin" bench "$b" "${args[@]}" || { echo "bench $b failed"; rc=1; }
  echo "== $b took $(( $(date +%s) - start )) s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
exit $rc

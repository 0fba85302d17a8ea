#!/usr/bin/env bash
# Runs MMSB's GPU tests and benchmarks on a GPU machine (H100/H200 with a CUDA
# driver and NVRTC; no Rust toolchain needed: build mmsb-gpu-check elsewhere
# with `cargo build --release -p mmsb-gpu` and bring rust/target/release/mmsb-gpu-check).
#
#   bash benchmark/gpu/run.sh [OUT_DIR] [--quick] [--no-bench]   (default OUT_DIR: benchmark/results)
#
# Writes gpu-check.json (the tests) and gpu-delta/pool/latency/unified/spmv.json
# (the benchmarks, naming the card), then times cuSPARSE SpMV on the same
# matrix with CuPy (or PyTorch) and adds the ratio to gpu-spmv.json.
# Exit status: that of the checks (0 all passed, 1 a check failed, 2 no GPU).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/benchmark/results}
bin=${MMSB_GPU_CHECK:-$root/rust/target/release/mmsb-gpu-check}
mkdir -p "$out"
export MMSB_SPMV_DIR=${MMSB_SPMV_DIR:-$(mktemp -d)/spmv}

# cudarc (pinned to CUDA 12.8 names) looks for libnvrtc.so or libnvrtc.so.12;
# a CUDA 13 install may only have libnvrtc.so.13. Point a private link at it.
if ! ldconfig -p | grep -q 'libnvrtc\.so\(\.12\)\? '; then
  lib=$(ldconfig -p | awk '/libnvrtc\.so\.[0-9]+ /{print $NF; exit}')
  [ -z "$lib" ] && lib=$(find / -xdev -name 'libnvrtc.so.1[0-9]*' -type f 2>/dev/null | head -1)
  if [ -n "$lib" ]; then
    link=$(mktemp -d)
    ln -s "$lib" "$link/libnvrtc.so"
    export LD_LIBRARY_PATH="$link:$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "using NVRTC $lib"
  fi
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
"$bin" "$out" "$@"
rc=$?
if [ -f "$out/gpu-spmv.json" ] && [ -f "$MMSB_SPMV_DIR/x.f64" ]; then
  python3 "$root/benchmark/gpu/cusparse_spmv.py" "$MMSB_SPMV_DIR" "$out" || echo "cuSPARSE comparison failed"
fi
rm -rf "$MMSB_SPMV_DIR"
exit $rc

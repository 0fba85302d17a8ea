"""Times cuSPARSE SpMV (through CuPy, or PyTorch) on the matrix mmsb-gpu-check
wrote, and adds the ratio to gpu-spmv.json.

    python3 cusparse_spmv.py MATRIX_DIR RESULTS_DIR

MATRIX_DIR holds indptr.u32, indices.u32, data.f64, x.f64 (raw little-endian)
and y_mmsb.f64 (MMSB's plus-times result, checked here against cuSPARSE).
"""
import json
import os
import sys

import numpy as np


def main():
    mdir, rdir = sys.argv[1], sys.argv[2]
    indptr = np.fromfile(os.path.join(mdir, "indptr.u32"), dtype=np.uint32).astype(np.int32)
    indices = np.fromfile(os.path.join(mdir, "indices.u32"), dtype=np.uint32).astype(np.int32)
    data = np.fromfile(os.path.join(mdir, "data.f64"), dtype=np.float64)
    x = np.fromfile(os.path.join(mdir, "x.f64"), dtype=np.float64)
    y_mmsb = np.fromfile(os.path.join(mdir, "y_mmsb.f64"), dtype=np.float64)
    n = len(indptr) - 1
    times = {}
    lib = None
    try:
        import cupy as cp
        import cupyx.scipy.sparse as csp

        lib = "cuSPARSE via CuPy " + cp.__version__
        for dt, name in [(np.float64, "f64"), (np.float32, "f32")]:
            a = csp.csr_matrix((cp.asarray(data.astype(dt)), cp.asarray(indices), cp.asarray(indptr)), shape=(n, n))
            xv = cp.asarray(x.astype(dt))
            y = a @ xv
            cp.cuda.Device().synchronize()
            if name == "f64":
                err = float(np.max(np.abs(cp.asnumpy(y) - y_mmsb)))
                print(f"cuSPARSE vs MMSB plus-times f64: max abs difference {err:e}")
            start, end = cp.cuda.Event(), cp.cuda.Event()
            reps = 50
            start.record()
            for _ in range(reps):
                y = a @ xv
            end.record()
            end.synchronize()
            times[name] = cp.cuda.get_elapsed_time(start, end) / reps
    except Exception as e:  # noqa: BLE001 - fall back to PyTorch
        print(f"CuPy unavailable ({e}); trying PyTorch")
        import torch

        lib = "cuSPARSE via PyTorch " + torch.__version__
        for dt, name in [(torch.float64, "f64"), (torch.float32, "f32")]:
            a = torch.sparse_csr_tensor(
                torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(indices.astype(np.int64)),
                torch.from_numpy(data).to(dt), size=(n, n)).cuda()
            xv = torch.from_numpy(x).to(dt).cuda()
            y = torch.mv(a, xv)
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            reps = 50
            start.record()
            for _ in range(reps):
                y = torch.mv(a, xv)
            end.record()
            end.synchronize()
            times[name] = start.elapsed_time(end) / reps
    print(f"{lib}: " + ", ".join(f"{k} {v:.4f} ms" for k, v in times.items()))
    path = os.path.join(rdir, "gpu-spmv.json")
    doc = json.load(open(path))
    for r in doc["results"]:
        dt = "f32" if r["name"].endswith("f32") else "f64"
        if dt in times:
            r["yardstick"] = f"{lib}, plus-times {dt}, same matrix and vector"
            r["yardstick_value"] = times[dt]
            r["ratio"] = times[dt] / r["value"]
            r["target"] = "report (>1 = faster than cuSPARSE)"
    json.dump(doc, open(path, "w"), indent=2)
    open(path, "a").write("\n")
    print(f"updated {path}")


if __name__ == "__main__":
    main()

# SuiteSparse:GraphBLAS side of `mmsb bench semiring` (the mxv cases).
#
# Usage: python bench_semiring_graphblas.py DIR REPS THREADS
#   DIR holds meta.json, indptr.bin (u64), indices.bin (u64), values.bin (f64)
#   and x.bin (f64), all little-endian, written by the Rust bench. THREADS is a
#   comma-separated list. For each thread count and semiring (plus_times,
#   min_plus over FP64) it times GrB_mxv(w, A, x) REPS times after one warm-up
#   and writes w to DIR/y_<semiring>_<threads>.bin (f64, +inf where w has no
#   entry), then prints one JSON document with the times in seconds.
#
# The timed call goes straight to the C library through the wheel's cffi
# `lib.GrB_mxv` (no expression building in the timed region); if that fails
# the python-graphblas expression `w << A.mxv(x, semiring)` is timed instead
# and "call" says so.
import json
import sys
import time

import numpy as np
import graphblas as gb
import suitesparse_graphblas as ssgb


def main():
    d, reps, threads = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3].split(",")]
    meta = json.load(open(f"{d}/meta.json"))
    n, m = meta["nrows"], meta["ncols"]
    indptr = np.fromfile(f"{d}/indptr.bin", dtype="<u8")
    idx = np.fromfile(f"{d}/indices.bin", dtype="<u8")
    vals = np.fromfile(f"{d}/values.bin", dtype="<f8")
    x = np.fromfile(f"{d}/x.bin", dtype="<f8")
    a = gb.Matrix.ss.import_csr(
        nrows=n, ncols=m, indptr=indptr, col_indices=idx, values=vals, sorted_cols=True
    )
    v = gb.Vector.from_dense(x)
    out = {"version": ssgb.__version__, "format": a.ss.format, "results": []}
    lib, ffi = ssgb.lib, ssgb.ffi
    for t in threads:
        gb.ss.config["nthreads"] = t
        for name in ("plus_times", "min_plus"):
            sr = getattr(gb.semiring, name)[gb.dtypes.FP64]
            w = gb.Vector(gb.dtypes.FP64, n)
            call = "lib.GrB_mxv"

            def low():
                info = lib.GrB_mxv(
                    w.gb_obj[0], ffi.NULL, ffi.NULL, sr.gb_obj, a.gb_obj[0], v.gb_obj[0], ffi.NULL
                )
                if info != 0:
                    raise RuntimeError(f"GrB_mxv returned {info}")
                lib.GrB_Vector_wait(w.gb_obj[0], lib.GrB_MATERIALIZE)

            def high():
                w << a.mxv(v, sr)
                w.wait()

            f = low
            try:
                low()
            except Exception as e:  # noqa: BLE001 - fall back, and say so
                call = f"w << A.mxv(x, semiring) ({e})"
                f = high
                f()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            y = w.to_dense(fill_value=np.inf).astype("<f8")
            y.tofile(f"{d}/y_{name}_{t}.bin")
            times.sort()
            out["results"].append(
                {
                    "semiring": name,
                    "threads": t,
                    "best_s": times[0],
                    "median_s": times[len(times) // 2],
                    "call": call,
                }
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

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
# Only the `suitesparse-graphblas` wheel (the C library with its cffi
# bindings) and numpy are needed: the matrix is built with
# GrB_Matrix_build_FP64 (by row, sparse: GraphBLAS's default), x is built
# with every entry present (GraphBLAS holds it as a full vector), and the
# timed call goes straight to the C library (`lib.GrB_mxv`, then
# GrB_Vector_wait to materialise w), with no Python object building inside the
# timed region.
import json
import sys
import time

import numpy as np
import suitesparse_graphblas as ssgb


def ok(info, what):
    if info != 0:
        raise RuntimeError(f"{what} returned GrB_Info {info}")


def main():
    d, reps, threads = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3].split(",")]
    meta = json.load(open(f"{d}/meta.json"))
    n, m = meta["nrows"], meta["ncols"]
    indptr = np.fromfile(f"{d}/indptr.bin", dtype="<u8")
    idx = np.ascontiguousarray(np.fromfile(f"{d}/indices.bin", dtype="<u8"))
    vals = np.ascontiguousarray(np.fromfile(f"{d}/values.bin", dtype="<f8"))
    x = np.ascontiguousarray(np.fromfile(f"{d}/x.bin", dtype="<f8"))
    rows = np.ascontiguousarray(np.repeat(np.arange(n, dtype="<u8"), np.diff(indptr).astype(np.int64)))
    ssgb.initialize()
    lib, ffi = ssgb.lib, ssgb.ffi
    u64p = lambda a: ffi.cast("GrB_Index *", ffi.from_buffer(a))  # noqa: E731
    f64p = lambda a: ffi.cast("double *", ffi.from_buffer(a))  # noqa: E731
    a = ffi.new("GrB_Matrix *")
    ok(lib.GrB_Matrix_new(a, lib.GrB_FP64, n, m), "GrB_Matrix_new")
    ok(
        lib.GrB_Matrix_build_FP64(a[0], u64p(rows), u64p(idx), f64p(vals), len(vals), lib.GrB_PLUS_FP64),
        "GrB_Matrix_build_FP64",
    )
    ok(lib.GrB_Matrix_wait(a[0], lib.GrB_MATERIALIZE), "GrB_Matrix_wait")
    v = ffi.new("GrB_Vector *")
    ok(lib.GrB_Vector_new(v, lib.GrB_FP64, m), "GrB_Vector_new")
    xi = np.arange(m, dtype="<u8")
    ok(lib.GrB_Vector_build_FP64(v[0], u64p(xi), f64p(x), m, lib.GrB_PLUS_FP64), "GrB_Vector_build_FP64")
    ok(lib.GrB_Vector_wait(v[0], lib.GrB_MATERIALIZE), "GrB_Vector_wait")
    ver = ffi.new("int32_t[3]")
    version = "unknown"
    try:
        ok(lib.GxB_Global_Option_get_INT32(lib.GxB_LIBRARY_VERSION, ver), "version")
        version = f"{ver[0]}.{ver[1]}.{ver[2]}"
    except Exception:  # noqa: BLE001 - the version is informational
        version = getattr(ssgb, "__version__", "unknown")
    out = {"version": version, "format": "by row (GrB_Matrix_build)", "results": []}
    semirings = {"plus_times": lib.GrB_PLUS_TIMES_SEMIRING_FP64, "min_plus": lib.GrB_MIN_PLUS_SEMIRING_FP64}
    for t in threads:
        ok(lib.GxB_Global_Option_set_INT32(lib.GxB_NTHREADS, t), "GxB_NTHREADS")
        for name, sr in semirings.items():
            w = ffi.new("GrB_Vector *")
            ok(lib.GrB_Vector_new(w, lib.GrB_FP64, n), "GrB_Vector_new")

            def f():
                ok(lib.GrB_mxv(w[0], ffi.NULL, ffi.NULL, sr, a[0], v[0], ffi.NULL), "GrB_mxv")
                ok(lib.GrB_Vector_wait(w[0], lib.GrB_MATERIALIZE), "GrB_Vector_wait")

            f()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            nv = ffi.new("GrB_Index *")
            ok(lib.GrB_Vector_nvals(nv, w[0]), "GrB_Vector_nvals")
            wi = np.zeros(nv[0], dtype="<u8")
            wx = np.zeros(nv[0], dtype="<f8")
            ok(lib.GrB_Vector_extractTuples_FP64(u64p(wi), f64p(wx), nv, w[0]), "extractTuples")
            y = np.full(n, np.inf, dtype="<f8")
            y[wi[: nv[0]]] = wx[: nv[0]]
            y.tofile(f"{d}/y_{name}_{t}.bin")
            lib.GrB_Vector_free(w)
            times.sort()
            out["results"].append(
                {
                    "semiring": name,
                    "threads": t,
                    "best_s": times[0],
                    "median_s": times[len(times) // 2],
                    "call": "lib.GrB_mxv",
                }
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

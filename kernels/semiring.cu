// Semiring kernels: fold_add, fold_mul, accumulate and CSR SpMV, for the
// built-in semirings over f32, f64, i32, i64 and u8.
//
// The semantics match the CPU reference in rust/mmsb-gpu/src/semiring_cpu.rs:
//
// | semiring   | add (⊕)      | zero | mul (⊗)                 | one |
// |------------|--------------|------|-------------------------|-----|
// | plus_times | a + b        | 0    | a * b                   | 1   |
// | min_plus   | min(a, b)    | +inf | a + b, +inf absorbing   | 0   |
// | max_plus   | max(a, b)    | -inf | a + b, -inf absorbing   | 0   |
// | or_and     | a!=0 || b!=0 | 0    | a!=0 && b!=0            | 1   |
//
// Integers: plus_times wraps (two's complement); min_plus and max_plus add
// with saturation and use the type's max (min) as +inf (-inf).
// Each kernel is instantiated once per (semiring, type) under an unmangled
// name: mmsb_<op>_<semiring>_<type>, e.g. mmsb_fold_add_min_plus_f64.

typedef unsigned long long u64;
typedef long long i64;
typedef int i32;
typedef unsigned int u32;
typedef unsigned char u8;

template <class T> struct Num;
template <> struct Num<float> {
    typedef float U;
    __device__ static float maxv() { return __int_as_float(0x7f800000); }
    __device__ static float minv() { return __int_as_float(0xff800000); }
    __device__ static float wadd(float a, float b) { return a + b; }
    __device__ static float wmul(float a, float b) { return a * b; }
    __device__ static float sadd(float a, float b) { return a + b; }
};
template <> struct Num<double> {
    __device__ static double maxv() { return __longlong_as_double(0x7ff0000000000000LL); }
    __device__ static double minv() { return __longlong_as_double((long long)0xfff0000000000000ULL); }
    __device__ static double wadd(double a, double b) { return a + b; }
    __device__ static double wmul(double a, double b) { return a * b; }
    __device__ static double sadd(double a, double b) { return a + b; }
};
template <> struct Num<i32> {
    __device__ static i32 maxv() { return 2147483647; }
    __device__ static i32 minv() { return -2147483647 - 1; }
    __device__ static i32 wadd(i32 a, i32 b) { return (i32)((u32)a + (u32)b); }
    __device__ static i32 wmul(i32 a, i32 b) { return (i32)((u32)a * (u32)b); }
    __device__ static i32 sadd(i32 a, i32 b) {
        const i64 r = (i64)a + (i64)b;
        return r > (i64)maxv() ? maxv() : (r < (i64)minv() ? minv() : (i32)r);
    }
};
template <> struct Num<i64> {
    __device__ static i64 maxv() { return 9223372036854775807LL; }
    __device__ static i64 minv() { return -9223372036854775807LL - 1; }
    __device__ static i64 wadd(i64 a, i64 b) { return (i64)((u64)a + (u64)b); }
    __device__ static i64 wmul(i64 a, i64 b) { return (i64)((u64)a * (u64)b); }
    __device__ static i64 sadd(i64 a, i64 b) {
        const i64 r = (i64)((u64)a + (u64)b);
        if (((a ^ r) & (b ^ r)) < 0) return a < 0 ? minv() : maxv();
        return r;
    }
};
template <> struct Num<u8> {
    __device__ static u8 maxv() { return 255; }
    __device__ static u8 minv() { return 0; }
    __device__ static u8 wadd(u8 a, u8 b) { return (u8)(a + b); }
    __device__ static u8 wmul(u8 a, u8 b) { return (u8)(a * b); }
    __device__ static u8 sadd(u8 a, u8 b) { const u32 r = (u32)a + (u32)b; return r > 255u ? 255 : (u8)r; }
};

// min / max for ⊕: a select for integers; IEEE minNum / maxNum for floats
// (fminf / fmax: a NaN operand yields the other one), as mmsb-core's
// `f32::min` / `f64::max`, so a NaN already in a page (bytes written as
// another type, say) gives the CPU's result.
template <class T> __device__ __forceinline__ T min2(T a, T b) { return b < a ? b : a; }
template <class T> __device__ __forceinline__ T max2(T a, T b) { return b > a ? b : a; }
template <> __device__ __forceinline__ float min2<float>(float a, float b) { return fminf(a, b); }
template <> __device__ __forceinline__ float max2<float>(float a, float b) { return fmaxf(a, b); }
template <> __device__ __forceinline__ double min2<double>(double a, double b) { return fmin(a, b); }
template <> __device__ __forceinline__ double max2<double>(double a, double b) { return fmax(a, b); }

struct PlusTimes {
    template <class T> __device__ static T zero() { return (T)0; }
    template <class T> __device__ static T one() { return (T)1; }
    template <class T> __device__ static T add(T a, T b) { return Num<T>::wadd(a, b); }
    template <class T> __device__ static T mul(T a, T b) { return Num<T>::wmul(a, b); }
};
struct MinPlus {
    template <class T> __device__ static T zero() { return Num<T>::maxv(); }
    template <class T> __device__ static T one() { return (T)0; }
    template <class T> __device__ static T add(T a, T b) { return min2<T>(a, b); }
    template <class T> __device__ static T mul(T a, T b) {
        if (a == Num<T>::maxv() || b == Num<T>::maxv()) return Num<T>::maxv();
        return Num<T>::sadd(a, b);
    }
};
struct MaxPlus {
    template <class T> __device__ static T zero() { return Num<T>::minv(); }
    template <class T> __device__ static T one() { return (T)0; }
    template <class T> __device__ static T add(T a, T b) { return max2<T>(a, b); }
    template <class T> __device__ static T mul(T a, T b) {
        if (a == Num<T>::minv() || b == Num<T>::minv()) return Num<T>::minv();
        return Num<T>::sadd(a, b);
    }
};
struct OrAnd {
    template <class T> __device__ static T zero() { return (T)0; }
    template <class T> __device__ static T one() { return (T)1; }
    template <class T> __device__ static T add(T a, T b) { return (a != (T)0 || b != (T)0) ? (T)1 : (T)0; }
    template <class T> __device__ static T mul(T a, T b) { return (a != (T)0 && b != (T)0) ? (T)1 : (T)0; }
};

// Warp shuffles for every element type (u8 travels as a 32-bit int).
__device__ __forceinline__ float shfl_down(float v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
__device__ __forceinline__ double shfl_down(double v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
__device__ __forceinline__ i32 shfl_down(i32 v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
__device__ __forceinline__ i64 shfl_down(i64 v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
__device__ __forceinline__ u8 shfl_down(u8 v, int d, int w) { return (u8)__shfl_down_sync(0xffffffffu, (u32)v, d, w); }

#define FOLD_THREADS 256

// Reduces with ⊕ (ADD = true) or ⊗ (ADD = false) over one block; every thread
// must call it. Returns the block's result in thread 0.
template <class S, class T, bool ADD>
__device__ T block_reduce(T v) {
    __shared__ T warp_sums[FOLD_THREADS / 32];
    for (int d = 16; d > 0; d >>= 1) {
        const T o = shfl_down(v, d, 32);
        v = ADD ? S::template add<T>(v, o) : S::template mul<T>(v, o);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        v = lane < nw ? warp_sums[lane] : (ADD ? S::template zero<T>() : S::template one<T>());
        for (int d = 16; d > 0; d >>= 1) {
            const T o = shfl_down(v, d, 32);
            v = ADD ? S::template add<T>(v, o) : S::template mul<T>(v, o);
        }
    }
    return v;
}

// One pass of a fold: block b folds its grid-stride share of x into out[b].
// The host launches it twice (blocks, then one block over the partials).
template <class S, class T, bool ADD>
__device__ void fold_pass(const T* x, u64 n, T* out) {
    T v = ADD ? S::template zero<T>() : S::template one<T>();
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        v = ADD ? S::template add<T>(v, x[i]) : S::template mul<T>(v, x[i]);
    }
    v = block_reduce<S, T, ADD>(v);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// c[i] = c[i] ⊕ t[i] where mask bit i is set (mask == 0: every element).
template <class S, class T>
__device__ void accumulate(T* c, const T* t, const u64* mask, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        if (mask && !((mask[i >> 6] >> (i & 63)) & 1ULL)) continue;
        c[i] = S::template add<T>(c[i], t[i]);
    }
}

// y[r] = ⊕_k vals[k] ⊗ x[cols[k]] over row r of a CSR matrix; `lanes` threads
// (a power of two <= 32) share a row. Every thread runs the shuffles.
template <class S, class T>
__device__ void spmv(const u32* __restrict__ row_ptr, const u32* __restrict__ cols,
                     const T* __restrict__ vals, const T* __restrict__ x, T* __restrict__ y,
                     u32 nrows, u32 lanes) {
    const u64 g = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 row = g / lanes;
    const u32 lane = (u32)(g % lanes);
    T v = S::template zero<T>();
    if (row < nrows) {
        const u32 end = row_ptr[row + 1];
        for (u32 k = row_ptr[row] + lane; k < end; k += lanes) {
            v = S::template add<T>(v, S::template mul<T>(vals[k], x[cols[k]]));
        }
    }
    for (int d = (int)lanes / 2; d > 0; d >>= 1) {
        v = S::template add<T>(v, shfl_down(v, d, (int)lanes));
    }
    if (row < nrows && lane == 0) y[row] = v;
}

#define INSTANTIATE(SNAME, S, TNAME, T)                                                          \
    extern "C" __global__ void mmsb_fold_add_##SNAME##_##TNAME(const T* x, u64 n, T* out) {       \
        fold_pass<S, T, true>(x, n, out);                                                        \
    }                                                                                            \
    extern "C" __global__ void mmsb_fold_mul_##SNAME##_##TNAME(const T* x, u64 n, T* out) {       \
        fold_pass<S, T, false>(x, n, out);                                                       \
    }                                                                                            \
    extern "C" __global__ void mmsb_accumulate_##SNAME##_##TNAME(T* c, const T* t, const u64* m,  \
                                                                 u64 n) {                        \
        accumulate<S, T>(c, t, m, n);                                                            \
    }                                                                                            \
    extern "C" __global__ void mmsb_spmv_##SNAME##_##TNAME(const u32* rp, const u32* ci,          \
                                                           const T* v, const T* x, T* y,         \
                                                           u32 nrows, u32 lanes) {               \
        spmv<S, T>(rp, ci, v, x, y, nrows, lanes);                                               \
    }

#define INSTANTIATE_TYPES(SNAME, S) \
    INSTANTIATE(SNAME, S, f32, float) \
    INSTANTIATE(SNAME, S, f64, double) \
    INSTANTIATE(SNAME, S, i32, i32) \
    INSTANTIATE(SNAME, S, i64, i64) \
    INSTANTIATE(SNAME, S, u8, u8)

INSTANTIATE_TYPES(plus_times, PlusTimes)
INSTANTIATE_TYPES(min_plus, MinPlus)
INSTANTIATE_TYPES(max_plus, MaxPlus)
INSTANTIATE_TYPES(or_and, OrAnd)

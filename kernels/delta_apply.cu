// Delta apply with bit masks: MMSB's device twin of rust/mmsb-core/src/apply.rs.
//
// A delta writes a byte range of a page. With a mask (one bit per byte, packed
// little-endian in 64-bit words) only the masked bytes change. A dense payload
// has one byte per byte of the range (`dst[i] = src[i]` where bit i is set); a
// sparse payload has only the masked bytes, in range order (the k-th set bit
// receives `src[k]`). For sparse payloads the host passes `prefix[w]`, the
// number of set bits before mask word w, so every thread finds its first value
// without a scan.
//
// Each thread owns 16-byte lanes (16 mask bits), dense or sparse payload.
// apply_masked_runs (warp runs of 32 mask words that skip all-zero runs with a
// ballot) is a benchmark variant only: on H200 it measured slower.

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

// One command of a batched apply (must match `ApplyCommand` in mmsb-gpu, 48 bytes).
struct ApplyCmd {
    u64 dst;      // device address of the first byte of the range
    u64 payload;  // dense bytes (len of them) or sparse values
    u64 mask;     // mask words; 0 = no mask (every byte of the range is written)
    u64 prefix;   // u32 per mask word: set bits before it (sparse payloads); 0 = dense
    u64 len;      // range length in bytes
    u64 reserved;
};

// Spreads 8 mask bits into 8 byte lanes: bit i -> 0xFF in byte i.
__device__ __forceinline__ u64 expand_mask_byte(u32 m) {
    u64 x = m;
    x = (x | (x << 28)) & 0x0000000F0000000FULL;
    x = (x | (x << 14)) & 0x0003000300030003ULL;
    x = (x | (x << 7)) & 0x0101010101010101ULL;
    return x * 0xFFULL;
}

// Byte-at-a-time fallback for one lane of `width` bytes (unaligned ranges, the tail).
__device__ __forceinline__ void apply_bytes(u8* __restrict__ dst, const u8* __restrict__ src,
                                            u32 m, u64 base, u32 width, u64 len) {
    for (u32 i = 0; i < width && base + i < len; i++) {
        if ((m >> i) & 1u) dst[base + i] = src[base + i];
    }
}

// One 16-byte lane of a dense payload under its 16 mask bits `m` (non-zero).
__device__ __forceinline__ void apply_lane16(u8* __restrict__ dst, const u8* __restrict__ src,
                                            u32 m, u64 t, u64 len, bool aligned) {
    const u64 base = t * 16;
    if (aligned && base + 16 <= len) {
        ulonglong2 v = ((const ulonglong2*)src)[t];
        if (m != 0xFFFFu) {
            const u64 lo = expand_mask_byte(m & 0xFFu), hi = expand_mask_byte(m >> 8);
            const ulonglong2 d = ((const ulonglong2*)dst)[t];
            v.x = (v.x & lo) | (d.x & ~lo);
            v.y = (v.y & hi) | (d.y & ~hi);
        }
        ((ulonglong2*)dst)[t] = v;
    } else {
        apply_bytes(dst, src, m, base, 16, len);
    }
}

// Dense payloads: each thread owns 16-byte lanes (16 mask bits). All-zero
// lanes touch nothing, all-one lanes are one 16-byte store, mixed lanes blend.
// Ranges whose destination and payload are both 16-byte aligned take the
// vector path; others go byte by byte. Each thread loads the masks of UNROLL
// lanes (8 in the kernels below: measured on H100, 8 beats 4 by 10% on a 1%
// mask and ties on full ones) before using any, so a sparse mask costs
// overlapping loads, not a chain of dependent ones.
template <int UNROLL>
__device__ __forceinline__ void apply_dense(u8* __restrict__ dst, const u8* __restrict__ src,
                                           const u64* __restrict__ mask, u64 len, u64 tid,
                                           u64 nthreads) {
    const unsigned short* m16 = (const unsigned short*)mask;
    const u64 lanes = (len + 15) / 16;
    const bool aligned = ((((u64)dst) | ((u64)src)) & 15) == 0;
    for (u64 t0 = tid; t0 < lanes; t0 += UNROLL * nthreads) {
        u32 m[UNROLL];
#pragma unroll
        for (int j = 0; j < UNROLL; j++) {
            const u64 t = t0 + j * nthreads;
            m[j] = t < lanes ? (mask ? (u32)m16[t] : 0xFFFFu) : 0u;
        }
#pragma unroll
        for (int j = 0; j < UNROLL; j++) {
            if (m[j]) apply_lane16(dst, src, m[j], t0 + j * nthreads, len, aligned);
        }
    }
}

// Sparse payloads: each thread owns 16-byte lanes (16 mask bits, like the
// dense path) and finds its first value from the word's prefix count plus the
// set bits of the word before its lane.
__device__ __forceinline__ void apply_sparse_lane(u8* __restrict__ dst, const u8* __restrict__ src,
                                                 const u64* __restrict__ mask,
                                                 const u32* __restrict__ prefix, u32 m, u64 t) {
    const u64 word = mask[t >> 2];
    const u32 sub = (u32)(t & 3);
    u64 k = prefix[t >> 2];
    if (sub) k += (u64)__popcll(word & ((1ULL << (16 * sub)) - 1ULL));
    const u64 base = t * 16;
    while (m) {
        const u32 i = (u32)(__ffs(m) - 1);
        dst[base + i] = src[k++];
        m &= m - 1u;
    }
}

template <int UNROLL>
__device__ __forceinline__ void apply_sparse(u8* __restrict__ dst, const u8* __restrict__ src,
                                            const u64* __restrict__ mask, const u32* __restrict__ prefix,
                                            u64 len, u64 tid, u64 nthreads) {
    const unsigned short* m16 = (const unsigned short*)mask;
    const u64 lanes = (len + 15) / 16;
    for (u64 t0 = tid; t0 < lanes; t0 += UNROLL * nthreads) {
        u32 m[UNROLL];
#pragma unroll
        for (int j = 0; j < UNROLL; j++) {
            const u64 t = t0 + j * nthreads;
            m[j] = t < lanes ? (u32)m16[t] : 0u;
        }
#pragma unroll
        for (int j = 0; j < UNROLL; j++) {
            if (m[j]) apply_sparse_lane(dst, src, mask, prefix, m[j], t0 + j * nthreads);
        }
    }
}

// Masked ranges, warp by warp: a warp owns runs of 32 mask words (2048
// range bytes, 128 lanes of 16 bytes). Each lane loads one word of each of
// RUNS runs before using any (coalesced 256-byte loads, RUNS in flight);
// `__ballot_sync` skips a run whose 32 words are all zero with no further
// work (on a 1% mask, 72% of runs). In a run with set bits, lane `l` takes
// the 16-byte lanes `l, l + 32, l + 64, l + 96` (so stores stay coalesced
// for full masks) and gets each one's word from its owner with
// `__shfl_sync`. Dense payloads go through `apply_lane16`; sparse payloads
// find a lane's first value from the host's per-word prefix count plus the
// set bits of the word below the lane.
template <int RUNS, bool SPARSE>
__device__ __forceinline__ void apply_masked_runs(u8* __restrict__ dst, const u8* __restrict__ src,
                                                  const u64* __restrict__ mask,
                                                  const u32* __restrict__ prefix, u64 len,
                                                  u64 warp, u64 nwarps) {
    const u32 lane = threadIdx.x & 31u;
    const u64 nwords = (len + 63) / 64;
    const u64 nruns = (nwords + 31) / 32;
    const bool aligned = ((((u64)dst) | ((u64)src)) & 15) == 0;
    for (u64 r0 = warp; r0 < nruns; r0 += RUNS * nwarps) {
        u64 w[RUNS];
#pragma unroll
        for (int u = 0; u < RUNS; u++) {
            const u64 wi = (r0 + u * nwarps) * 32 + lane;
            w[u] = wi < nwords ? __ldg(mask + wi) : 0ULL;
        }
#pragma unroll
        for (int u = 0; u < RUNS; u++) {
            const u64 r = r0 + u * nwarps;  // the same in every lane of the warp
            if (__ballot_sync(0xFFFFFFFFu, w[u] != 0ULL) == 0u) continue;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const u32 l = (u32)j * 32u + lane;
                const u64 word = __shfl_sync(0xFFFFFFFFu, w[u], (int)(l >> 2));
                const u32 sub = l & 3u;
                const u32 m = (u32)(word >> (16 * sub)) & 0xFFFFu;
                if (!m) continue;
                const u64 t = r * 128 + l;
                if (SPARSE) {
                    u64 k = prefix[r * 32 + (l >> 2)];
                    if (sub) k += (u64)__popcll(word & ((1ULL << (16 * sub)) - 1ULL));
                    const u64 base = t * 16;
                    u32 mm = m;
                    while (mm) {
                        const u32 i = (u32)(__ffs(mm) - 1);
                        dst[base + i] = src[k++];
                        mm &= mm - 1u;
                    }
                } else {
                    apply_lane16(dst, src, m, t, len, aligned);
                }
            }
        }
    }
}

template <int UNROLL>
__device__ __forceinline__ void apply_range(u8* dst, const u8* src, const u64* mask,
                                            const u32* prefix, u64 len, u64 tid, u64 nthreads) {
    if (prefix == 0) {
        apply_dense<UNROLL>(dst, src, mask, len, tid, nthreads);
    } else {
        apply_sparse<UNROLL>(dst, src, mask, prefix, len, tid, nthreads);
    }
}

// One delta: a grid-stride loop over the lanes of its range.
extern "C" __global__ void mmsb_apply_one(u8* dst, const u8* src, const u64* mask,
                                          const u32* prefix, u64 len) {
    const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 n = (u64)gridDim.x * blockDim.x;
    apply_range<8>(dst, src, mask, prefix, len, tid, n);
}

// Benchmark variant: 16 lanes' masks in flight per thread instead of 8.
extern "C" __global__ void mmsb_apply_one_lanes16(u8* dst, const u8* src, const u64* mask,
                                                  const u32* prefix, u64 len) {
    const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 n = (u64)gridDim.x * blockDim.x;
    apply_range<16>(dst, src, mask, prefix, len, tid, n);
}

// Benchmark variant (measured slower on H200, not used by the store): masked
// ranges by warp runs (apply_masked_runs), blockDim.x a multiple of 32.
extern "C" __global__ void mmsb_apply_one_runs(u8* dst, const u8* src, const u64* mask,
                                               const u32* prefix, u64 len) {
    const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 n = (u64)gridDim.x * blockDim.x;
    if (mask == 0) {
        apply_dense<8>(dst, src, mask, len, tid, n);
    } else if (prefix == 0) {
        apply_masked_runs<8, false>(dst, src, mask, prefix, len, tid >> 5, n >> 5);
    } else {
        apply_masked_runs<8, true>(dst, src, mask, prefix, len, tid >> 5, n >> 5);
    }
}

// A batch: blockIdx.y walks the commands, blockIdx.x/threadIdx.x the lanes
// of each. Commands of one launch must not overlap (the host
// splits batches where two deltas touch the same page), so their order
// inside a launch is free.
extern "C" __global__ void mmsb_apply_batch(const ApplyCmd* cmds, u32 ncmds) {
    const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 n = (u64)gridDim.x * blockDim.x;
    for (u32 c = blockIdx.y; c < ncmds; c += gridDim.y) {
        const ApplyCmd cmd = cmds[c];
        apply_range<8>((u8*)cmd.dst, (const u8*)cmd.payload, (const u64*)cmd.mask,
                       (const u32*)cmd.prefix, cmd.len, tid, n);
    }
}

// The smallest useful kernel: adds one to a counter. Used to measure the cost
// of a launch (and of a graph replay) per command.
extern "C" __global__ void mmsb_touch(u64* counter) {
    if (threadIdx.x == 0 && blockIdx.x == 0) counter[0] += 1;
}

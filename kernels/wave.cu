// Propagation waves on the device: one level of a planned wave per launch.
//
// The engine plans a wave as a command buffer (rust/mmsb-core/src/command_buffer.rs):
// levels of commands, each recomputing one derived page from its data parents.
// For the built-in recompute functions that are elementwise over the first
// input — passthrough (copy) and the byte transforms xor-const and add-const —
// a command is `dst[i] = op(src[i])` for i < len (len = the shorter of the two
// pages; bytes past it keep their value), the device twin of
// `RecomputeFn::Passthrough` / `RecomputeFn::Transform` in rust/mmsb-core/src/recompute.rs.
//
// Grid: blockIdx.y = command, blockIdx.x strides over its bytes. A block that
// wrote a different byte sets changed[command] (cutoff: the host runs a later
// command only if one of its inputs changed). Commands of one launch are one
// level, so no command reads another's destination.

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

// One command (must match `WaveCommand` in rust/mmsb-gpu/src/device_wave.rs, 32 bytes).
struct WaveCmd {
    u64 dst;  // device address of the derived page
    u64 src;  // device address of its first data parent
    u64 len;  // bytes to compute
    u32 op;   // 0 copy, 1 xor with k, 2 add k (wrapping)
    u32 k;    // the constant (low byte used)
};

__device__ __forceinline__ u8 wave_op(u32 op, u8 k, u8 s) {
    return op == 0 ? s : (op == 1 ? (u8)(s ^ k) : (u8)(s + k));
}

__device__ __forceinline__ u32 wave_op4(u32 op, u32 k4, u32 s) {
    if (op == 0) return s;
    if (op == 1) return s ^ k4;
    // Bytewise wrapping add of four lanes.
    u32 lo = (s & 0x7F7F7F7Fu) + (k4 & 0x7F7F7F7Fu);
    return lo ^ ((s ^ k4) & 0x80808080u);
}

extern "C" __global__ void mmsb_wave_level(const WaveCmd* __restrict__ cmds, u32 n,
                                           u32* __restrict__ changed) {
    u32 c = blockIdx.y;
    if (c >= n) return;
    WaveCmd w = cmds[c];
    u8 k = (u8)w.k;
    int diff = 0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (((w.dst | w.src) & 3) == 0) {
        // Aligned: four bytes per step, then the tail.
        u32 k4 = 0x01010101u * k;
        u64 words = w.len / 4;
        const u32* s4 = (const u32*)w.src;
        u32* d4 = (u32*)w.dst;
        for (u64 i = t; i < words; i += stride) {
            u32 v = wave_op4(w.op, k4, s4[i]);
            if (d4[i] != v) { d4[i] = v; diff = 1; }
        }
        for (u64 i = words * 4 + t; i < w.len; i += stride) {
            u8 v = wave_op(w.op, k, ((const u8*)w.src)[i]);
            if (((u8*)w.dst)[i] != v) { ((u8*)w.dst)[i] = v; diff = 1; }
        }
    } else {
        for (u64 i = t; i < w.len; i += stride) {
            u8 v = wave_op(w.op, k, ((const u8*)w.src)[i]);
            if (((u8*)w.dst)[i] != v) { ((u8*)w.dst)[i] = v; diff = 1; }
        }
    }
    if (__syncthreads_or(diff) && threadIdx.x == 0) atomicOr(&changed[c], 1u);
}

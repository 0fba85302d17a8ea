// The persistent kernel: one resident thread consumes a command ring that
// lives in pinned, host-mapped memory, so a command costs no kernel launch.
//
// Protocol (must match rust/mmsb-gpu/src/persistent.rs):
// * ring[i % capacity] holds command i. The host fills op/a/b, then publishes
//   the slot by storing seq = i + 1 (the doorbell). The host never overwrites a
//   slot the device has not consumed: it waits until ctl->done > i - capacity.
// * the device polls the next slots (several warps, staggered), executes the
//   ready ones in order, and stores ctl->done = (commands executed) after a
//   release fence of the chosen scope (the host's completion signal).
// * OP_STOP ends the loop; the device writes its statistics into ctl and exits,
//   so the launch completes and the stream can be synchronised.

typedef unsigned long long u64;

#define OP_STOP 0ULL
#define OP_LOG 1ULL    // out_log[i] = a (a sequence record, to check order)
#define OP_WRITE 2ULL  // page[a] = b (a one-word delta)
#define OP_ADD 3ULL    // page[a] += b

struct RingCtl {
    u64 done;          // commands completed (device -> host)
    u64 device_polls;  // polls that found no new command (device statistic)
    u64 stopped;       // 1 once the kernel has left its loop
    u64 out_of_order;  // OP_LOG records whose value differed from their index
    u64 poll_ns;       // total duration of warp 0's empty polls (globaltimer ns)
    u64 poll_samples;  // number of those polls
    u64 reserved[10];  // pads `done` and the words above to their own 128-byte line
    u64 visible;       // commands whose effects are visible GPU-wide (device -> host),
                       // on its own 128-byte line
    u64 reserved2[15];
};

#define SLOTS_PER_POLL 8  // one warp reads 8 slots of 4 words in one 256-byte sweep

__device__ __forceinline__ u64 global_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// The fence before `done` is published (argument `fence_scope`):
// 0 = system scope (fence.acq_rel.sys: the host may read the effects of the
//     commands through mapped memory as soon as it sees `done`);
// 1 = GPU scope (fence.acq_rel.gpu: other device work sees them);
// 2 = block scope (the effects are read after stop(), whose kernel exit
//     orders everything for the host);
// 3 = deferred GPU scope: `done` is published first with no fence beyond the
//     block (executed, in order), then a GPU-scope fence, then `visible`
//     (other device work sees the effects of every command below it). The
//     host waits for `done` for a round trip and for `visible` when it hands
//     the effects to other device work.
// A system-scope fence costs a bus round trip, as it waits for earlier
// writes to reach the host.
__device__ __forceinline__ void publish_fence(u64 scope) {
    if (scope == 0) {
        asm volatile("fence.acq_rel.sys;" ::: "memory");
    } else if (scope == 1) {
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    } else {
        __threadfence_block();
    }
}

// Stores a completion word to host-mapped memory.
__device__ __forceinline__ void store_relaxed_sys(volatile u64* p, u64 v) {
    asm volatile("st.relaxed.sys.u64 [%0], %1;" ::"l"((u64)p), "l"(v) : "memory");
}

// One or more warps poll (blockDim.x / 32), each on its own schedule (started
// a fraction of a bus round trip apart), so a new command is seen by whichever
// read is issued first after it lands. Lane L of a warp reads word L % 4 of
// slot next + L / 4 for the first `slots_per_poll` (1 to 8) slots: a poll is
// one coalesced read of up to 256 bytes. (Measured on H200: more pollers and
// bigger polls lengthen each bus round trip; see docs/gpu.md.)
// A slot's four words lie in one 32-byte aligned block of one cache line, and
// the host stores the payload before the sequence word (x86 keeps stores in
// order, and it fences), so a read that sees the sequence number also sees
// the payload. A warp that finds ready slots takes the block's lock, checks
// that nobody consumed them meanwhile, executes the ready prefix in order
// (lane 0), then one fence and one store of `done` publish the prefix.
extern "C" __global__ void mmsb_persistent(const volatile u64* ring, u64 capacity,
                                           volatile RingCtl* ctl, u64* out_log, u64 log_cap,
                                           u64* page, u64 page_words, u64 slots_per_poll,
                                           u64 fence_scope) {
    __shared__ volatile u64 s_next;
    __shared__ volatile int s_stop;
    __shared__ int s_lock;
    __shared__ unsigned long long s_polls, s_bad;
    if (blockIdx.x != 0) return;
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned FULL = 0xffffffffu;
    if (threadIdx.x == 0) {
        s_next = 0;
        s_stop = 0;
        s_lock = 0;
        s_polls = 0;
        s_bad = 0;
    }
    __syncthreads();
    __nanosleep(warp * 300);
    u64 polls = 0, bad = 0, poll_ns = 0, poll_samples = 0;
    while (!s_stop) {
        const u64 base = s_next;
        const u64 idx = base + (lane >> 2);
        const u64 t0 = global_ns();
        const u64 w = (lane >> 2) < slots_per_poll ? ring[(idx % capacity) * 4 + (lane & 3)] : 0;
        const u64 seq = __shfl_sync(FULL, w, lane & ~3u);
        const unsigned ready = __ballot_sync(FULL, (lane & 3) == 0 && seq == idx + 1);
        unsigned n = 0;
        while (n < SLOTS_PER_POLL && ((ready >> (4 * n)) & 1u)) n++;
        if (n == 0) {
            polls++;
            if (warp == 0) {
                poll_ns += global_ns() - t0;
                poll_samples++;
            }
            continue;
        }
        int got = 0;
        if (lane == 0) got = atomicCAS(&s_lock, 0, 1) == 0;
        got = __shfl_sync(FULL, got, 0);
        if (!got) continue;
        __threadfence_block();
        if (s_next != base) {  // another warp consumed these slots meanwhile
            __syncwarp();
            if (lane == 0) atomicExch(&s_lock, 0);
            continue;
        }
        unsigned executed = 0;
        bool stop = false;
        for (unsigned k = 0; k < n; k++) {
            const u64 op = __shfl_sync(FULL, w, 4 * k + 1);
            const u64 a = __shfl_sync(FULL, w, 4 * k + 2);
            const u64 b = __shfl_sync(FULL, w, 4 * k + 3);
            if (op == OP_STOP) {
                stop = true;
                break;
            }
            if (lane == 0) {
                const u64 i = base + k;
                if (op == OP_LOG) {
                    if (a != i) bad++;
                    if (i < log_cap) out_log[i] = a;
                } else if (op == OP_WRITE) {
                    if (a < page_words) page[a] = b;
                } else if (op == OP_ADD) {
                    if (a < page_words) page[a] += b;
                }
            }
            executed++;
        }
        if (lane == 0) {
            const u64 next = base + executed;
            const u64 done = stop ? next + 1 : next;
            if (fence_scope == 3) {
                __threadfence_block();
                store_relaxed_sys(&ctl->done, done);
                asm volatile("fence.acq_rel.gpu;" ::: "memory");
                store_relaxed_sys(&ctl->visible, done);
            } else {
                publish_fence(fence_scope);
                store_relaxed_sys(&ctl->done, done);
                store_relaxed_sys(&ctl->visible, done);
            }
            s_next = next;
            if (stop) s_stop = 1;
            __threadfence_block();
            atomicExch(&s_lock, 0);
        }
        __syncwarp();
    }
    if (lane == 0) {
        atomicAdd(&s_polls, (unsigned long long)polls);
        atomicAdd(&s_bad, (unsigned long long)bad);
    }
    if (warp == 0 && lane == 0) {
        ctl->poll_ns = poll_ns;
        ctl->poll_samples = poll_samples;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        ctl->device_polls = s_polls;
        ctl->out_of_order = s_bad;
        __threadfence_system();
        ctl->stopped = 1;
    }
}

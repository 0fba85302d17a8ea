// The persistent kernel: one resident thread consumes a command ring that
// lives in pinned, host-mapped memory, so a command costs no kernel launch.
//
// Protocol (must match rust/mmsb-gpu/src/persistent.rs):
// * ring[i % capacity] holds command i. The host fills op/a/b, then publishes
//   the slot by storing seq = i + 1 (the doorbell). The host never overwrites a
//   slot the device has not consumed: it waits until ctl->done > i - capacity.
// * the device polls the next slot's seq, executes the command, and stores
//   ctl->done = i + 1 after a system-wide fence (the host's completion signal).
// * OP_STOP ends the loop; the device writes its statistics into ctl and exits,
//   so the launch completes and the stream can be synchronised.

typedef unsigned long long u64;

#define OP_STOP 0ULL
#define OP_LOG 1ULL    // out_log[i] = a (a sequence record, to check order)
#define OP_WRITE 2ULL  // page[a] = b (a one-word delta)
#define OP_ADD 3ULL    // page[a] += b

struct RingSlot {
    u64 seq;
    u64 op;
    u64 a;
    u64 b;
};

struct RingCtl {
    u64 done;          // commands completed (device -> host)
    u64 device_polls;  // polls of an empty slot (device statistic)
    u64 stopped;       // 1 once the kernel has left its loop
    u64 out_of_order;  // OP_LOG records whose value differed from their index
};

extern "C" __global__ void mmsb_persistent(volatile RingSlot* ring, u64 capacity,
                                           volatile RingCtl* ctl, u64* out_log, u64 log_cap,
                                           u64* page, u64 page_words) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    u64 next = 0, polls = 0, bad = 0;
    for (;;) {
        volatile RingSlot* s = &ring[next % capacity];
        while (s->seq != next + 1) polls++;
        __threadfence_system();
        const u64 op = s->op, a = s->a, b = s->b;
        if (op == OP_STOP) break;
        if (op == OP_LOG) {
            if (a != next) bad++;
            if (next < log_cap) out_log[next] = a;
        } else if (op == OP_WRITE) {
            if (a < page_words) page[a] = b;
        } else if (op == OP_ADD) {
            if (a < page_words) page[a] += b;
        }
        next++;
        __threadfence_system();
        ctl->done = next;
    }
    ctl->device_polls = polls;
    ctl->out_of_order = bad;
    __threadfence_system();
    ctl->stopped = 1;
    ctl->done = next + 1;
}

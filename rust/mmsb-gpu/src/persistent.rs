//! The persistent kernel: a resident device thread fed by a command ring.
//!
//! Launching a kernel per delta costs several microseconds of driver work and
//! a synchronisation. Instead, one kernel (`kernels/persistent.cu`) stays
//! resident and polls a ring of command slots in pinned, host-mapped memory:
//!
//! * the host writes command `i` into slot `i % capacity` (op and arguments),
//!   then rings the doorbell by storing `seq = i + 1` in the slot;
//! * the device (two staggered warps) reads the next 8 slots in one sweep
//!   over the bus, runs the ready prefix in order, and publishes `done`
//!   (commands completed), then, after a GPU-scope fence, `visible` (their
//!   effects seen by other device work; [`FenceScope`] has the variants);
//! * the host reuses a slot only once `done` shows it consumed.
//!
//! Commands are consumed strictly in order, and [`PersistentKernel::stop`]
//! sends a stop command, waits for the kernel to leave its loop and return,
//! and reports [`RingStats`]: commands, device polls of an empty slot, host
//! spins waiting for room or completion, and out-of-order records seen.

use crate::cuda_device::{Arg, CudaDevice};
use crate::gpu_error;
use crate::kernel_cache::KernelSource;
use crate::pinned::PinnedBuf;
use cudarc::driver::CudaStream;
use mmsb_core::error::Result;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A command the persistent kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingOp {
    /// Record `a` at the command's index of the device log (an order check).
    Log(u64),
    /// `page[a] = b` on the kernel's word page (a one-word delta).
    Write(u64, u64),
    /// `page[a] += b`.
    Add(u64, u64),
}

const OP_STOP: u64 = 0;
const SLOT_WORDS: usize = 4;
const CTL_DONE: usize = 0;
const CTL_POLLS: usize = 1;
const CTL_STOPPED: usize = 2;
const CTL_BAD: usize = 3;
const CTL_POLL_NS: usize = 4;
const CTL_POLL_SAMPLES: usize = 5;
/// `visible`: on its own 128-byte line (word 16 of 32).
const CTL_VISIBLE: usize = 16;
const CTL_WORDS: usize = 32;
/// The scope of the fence the kernel issues before it publishes `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceScope {
    /// The host may read command effects through mapped memory as soon as it
    /// sees `done` (costs a bus round trip per publication).
    System = 0,
    /// Other device work sees the effects once `done` is published.
    Gpu = 1,
    /// Effects are read after [`PersistentKernel::stop`] (kernel exit orders
    /// them for the host); `done` means consumed and executed in order.
    Block = 2,
    /// `done` is published as soon as the commands ran (in order, no fence
    /// beyond the block: the round trip), then a GPU-scope fence publishes
    /// `visible` ([`PersistentKernel::wait_visible`]): other device work sees
    /// the effects of every command below `visible`.
    Deferred = 3,
}

/// How the kernel polls and publishes: warps (staggered pollers), slots read
/// per poll, and the fence before `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollShape {
    /// Polling warps, 1 to 8.
    pub warps: u32,
    /// Ring slots read per poll, 1 to 8.
    pub slots: u32,
    /// Fence scope before `done` is published.
    pub fence: FenceScope,
}

impl Default for PollShape {
    /// Two staggered warps reading 8 slots a poll (the best round trip of
    /// the shapes measured, with full-speed pipelining), publishing `done`
    /// before the GPU-scope fence and `visible` after it
    /// ([`FenceScope::Deferred`]; see docs/gpu.md).
    fn default() -> PollShape {
        PollShape {
            warps: 2,
            slots: 8,
            fence: FenceScope::Deferred,
        }
    }
}

/// Signalling statistics of a ring session.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RingStats {
    /// Commands completed (stop excluded).
    pub commands: u64,
    /// Device polls that found the next slot empty.
    pub device_polls: u64,
    /// Host spins waiting for a free slot or a completion.
    pub host_spins: u64,
    /// `Log` records whose value differed from their index (0 when in order).
    pub out_of_order: u64,
    /// Mean duration of one empty poll of the ring (a bus round trip), in ns.
    pub mean_poll_ns: f64,
    /// Whether the kernel stopped and returned cleanly.
    pub clean_shutdown: bool,
}

/// A running persistent kernel and its ring.
pub struct PersistentKernel {
    dev: Arc<CudaDevice>,
    stream: Arc<CudaStream>,
    ring: PinnedBuf,
    ctl: PinnedBuf,
    capacity: u64,
    next: u64,
    host_spins: u64,
    log: u64,
    log_cap: u64,
    page: u64,
    page_words: u64,
    running: bool,
}

impl PersistentKernel {
    /// Starts the kernel with a ring of `capacity` slots, a device log of
    /// `log_cap` words and a word page of `page_words` words (both zeroed).
    pub fn start(
        dev: Arc<CudaDevice>,
        capacity: u64,
        log_cap: u64,
        page_words: u64,
    ) -> Result<PersistentKernel> {
        PersistentKernel::start_with(dev, capacity, log_cap, page_words, PollShape::default())
    }

    /// [`PersistentKernel::start`] with an explicit polling shape.
    pub fn start_with(
        dev: Arc<CudaDevice>,
        capacity: u64,
        log_cap: u64,
        page_words: u64,
        shape: PollShape,
    ) -> Result<PersistentKernel> {
        let capacity = capacity.max(2);
        let warps = shape.warps.clamp(1, 8);
        let slots = shape.slots.clamp(1, 8) as u64;
        let ctx = dev.context().clone();
        let stream = ctx
            .new_stream()
            .map_err(|e| gpu_error::driver("create ring stream", e))?;
        let ring = PinnedBuf::new(&ctx, capacity as usize * SLOT_WORDS * 8)?;
        let ctl = PinnedBuf::new(&ctx, CTL_WORDS * 8)?;
        let log = dev
            .pool()
            .alloc((log_cap.max(1) * 8) as usize, dev.stream())?;
        let page = dev
            .pool()
            .alloc((page_words.max(1) * 8) as usize, dev.stream())?;
        dev.memset(log, 0, (log_cap.max(1) * 8) as usize)?;
        dev.memset(page, 0, (page_words.max(1) * 8) as usize)?;
        dev.sync()?;
        let f = dev.function(KernelSource::Persistent, "mmsb_persistent")?;
        dev.launch_on(
            &stream,
            &f,
            (1, 1, 1),
            32 * warps,
            &[
                Arg::U64(ring.device_ptr()),
                Arg::U64(capacity),
                Arg::U64(ctl.device_ptr()),
                Arg::U64(log),
                Arg::U64(log_cap),
                Arg::U64(page),
                Arg::U64(page_words),
                Arg::U64(slots),
                Arg::U64(shape.fence as u64),
            ],
        )?;
        Ok(PersistentKernel {
            dev,
            stream,
            ring,
            ctl,
            capacity,
            next: 0,
            host_spins: 0,
            log,
            log_cap,
            page,
            page_words,
            running: true,
        })
    }

    fn ctl_word(&self, i: usize) -> u64 {
        // SAFETY: the control block holds CTL_WORDS u64 words; the device writes them,
        // so they are read with volatile loads.
        unsafe { std::ptr::read_volatile(self.ctl.host_ptr().cast::<u64>().add(i)) }
    }

    /// Commands the device has completed.
    pub fn done(&self) -> u64 {
        self.ctl_word(CTL_DONE)
    }

    /// Commands whose effects other device work sees (with
    /// [`FenceScope::Deferred`] this may trail [`PersistentKernel::done`];
    /// with the other scopes it equals it).
    pub fn visible(&self) -> u64 {
        self.ctl_word(CTL_VISIBLE)
    }

    /// Waits until the effects of at least `n` commands are visible to other
    /// device work (10 s limit).
    pub fn wait_visible(&mut self, n: u64) -> Result<()> {
        let t0 = Instant::now();
        while self.visible() < n {
            self.host_spins += 1;
            if self.host_spins.is_multiple_of(4096) && t0.elapsed() > Duration::from_secs(10) {
                return Err(gpu_error::gpu(format!(
                    "persistent kernel stalled at {} of {n} visible commands",
                    self.visible()
                )));
            }
            std::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Commands submitted so far.
    pub fn submitted(&self) -> u64 {
        self.next
    }

    fn push(&mut self, op: u64, a: u64, b: u64) -> Result<u64> {
        if !self.running {
            return Err(gpu_error::gpu("the persistent kernel is stopped"));
        }
        let i = self.next;
        if i >= self.capacity {
            let need = i - self.capacity + 1;
            self.wait_for(need)?;
        }
        let slot = (i % self.capacity) as usize * SLOT_WORDS;
        let base = self.ring.host_ptr().cast::<u64>();
        // SAFETY: `slot + 3` is inside the ring (capacity * 4 words); the
        // device no longer reads this slot (done >= i - capacity + 1). The
        // payload is stored first, then a fence, then the sequence number
        // that publishes it.
        unsafe {
            std::ptr::write_volatile(base.add(slot + 1), op);
            std::ptr::write_volatile(base.add(slot + 2), a);
            std::ptr::write_volatile(base.add(slot + 3), b);
            fence(Ordering::SeqCst);
            std::ptr::write_volatile(base.add(slot), i + 1);
        }
        // Drain the store buffer now rather than whenever the CPU gets to it.
        fence(Ordering::SeqCst);
        self.next = i + 1;
        Ok(i)
    }

    /// Submits a command without waiting; returns its index.
    pub fn submit(&mut self, op: RingOp) -> Result<u64> {
        let (o, a, b) = match op {
            RingOp::Log(a) => (1, a, 0),
            RingOp::Write(a, b) => (2, a, b),
            RingOp::Add(a, b) => (3, a, b),
        };
        self.push(o, a, b)
    }

    /// Waits until at least `n` commands are done (10 s limit: a hung device
    /// is an error, not a hang).
    pub fn wait_for(&mut self, n: u64) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if self.done() >= n {
                fence(Ordering::SeqCst);
                return Ok(());
            }
            self.host_spins += 1;
            if self.host_spins.is_multiple_of(4096) && t0.elapsed() > Duration::from_secs(10) {
                return Err(gpu_error::gpu(format!(
                    "persistent kernel stalled at {} of {n} commands",
                    self.done()
                )));
            }
            std::hint::spin_loop();
        }
    }

    /// Submits one command and waits for it: a full round trip.
    pub fn round_trip(&mut self, op: RingOp) -> Result<()> {
        let i = self.submit(op)?;
        self.wait_for(i + 1)
    }

    /// Stops the kernel, waits for it to return, and reports the statistics.
    pub fn stop(&mut self) -> Result<RingStats> {
        if self.running {
            let i = self.push(OP_STOP, 0, 0)?;
            self.wait_for(i + 1)?;
            self.stream
                .synchronize()
                .map_err(|e| gpu_error::driver("persistent kernel exit", e))?;
            self.running = false;
        }
        Ok(RingStats {
            commands: self.next.saturating_sub(1),
            device_polls: self.ctl_word(CTL_POLLS),
            host_spins: self.host_spins,
            out_of_order: self.ctl_word(CTL_BAD),
            mean_poll_ns: self.ctl_word(CTL_POLL_NS) as f64
                / self.ctl_word(CTL_POLL_SAMPLES).max(1) as f64,
            clean_shutdown: self.ctl_word(CTL_STOPPED) == 1,
        })
    }

    /// The device log (after [`PersistentKernel::stop`]): entry `i` is what
    /// the `i`-th command logged.
    pub fn read_log(&self) -> Result<Vec<u64>> {
        let mut bytes = vec![0u8; (self.log_cap * 8) as usize];
        self.dev.download(self.log, &mut bytes)?;
        Ok(words(&bytes))
    }

    /// The word page (after [`PersistentKernel::stop`]).
    pub fn read_page(&self) -> Result<Vec<u64>> {
        let mut bytes = vec![0u8; (self.page_words * 8) as usize];
        self.dev.download(self.page, &mut bytes)?;
        Ok(words(&bytes))
    }
}

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

impl Drop for PersistentKernel {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop();
        }
        let pool = self.dev.pool();
        let _ = pool.free(
            self.log,
            (self.log_cap.max(1) * 8) as usize,
            self.dev.stream(),
        );
        let _ = pool.free(
            self.page,
            (self.page_words.max(1) * 8) as usize,
            self.dev.stream(),
        );
    }
}

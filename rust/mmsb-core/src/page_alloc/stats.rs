//! Allocator statistics: what is live, what was done, and where threads met.
//!
//! Counters are kept per shard (one cache line each, see
//! [`slab_class`](super::slab_class)) so that threads do not share a counter
//! line, and summed when [`PageAllocator::stats`](super::PageAllocator::stats)
//! is called. The sums are exact when no thread is allocating or freeing;
//! while threads are, each counter is a recent value (live counts are clamped
//! at zero, since a free may be counted before the allocation it undoes).

/// Statistics of one size class (or of the large-page path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassStats {
    /// Slot size in bytes (for the large path: 0, sizes vary).
    pub slot_size: usize,
    /// Pages currently allocated.
    pub live_pages: u64,
    /// Bytes currently allocated (slot bytes for a class, page bytes for large).
    pub live_bytes: u64,
    /// Bytes reserved from the system (slab chunks, or live large pages).
    pub reserved_bytes: u64,
    /// Allocations since the allocator was created.
    pub allocations: u64,
    /// Frees since the allocator was created.
    pub frees: u64,
    /// Failed compare-and-swaps on the lock-free freelists (contention).
    pub cas_retries: u64,
    /// Entries into the slow path: a shard's freelist was empty (steal from
    /// another shard or carve a new chunk); for large pages, every call.
    pub slow_path: u64,
    /// Large path only: times the mutex was found held by another thread.
    pub lock_contended: u64,
}

/// Statistics of a whole allocator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllocStats {
    /// One entry per size class, smallest first.
    pub classes: Vec<ClassStats>,
    /// The mutex path for pages larger than the largest class (and for any
    /// class whose chunk table is full).
    pub large: ClassStats,
}

impl AllocStats {
    /// Sums over every class and the large path (`slot_size` is 0).
    pub fn totals(&self) -> ClassStats {
        let mut t = self.large;
        t.slot_size = 0;
        for c in &self.classes {
            t.live_pages += c.live_pages;
            t.live_bytes += c.live_bytes;
            t.reserved_bytes += c.reserved_bytes;
            t.allocations += c.allocations;
            t.frees += c.frees;
            t.cas_retries += c.cas_retries;
            t.slow_path += c.slow_path;
            t.lock_contended += c.lock_contended;
        }
        t
    }
}

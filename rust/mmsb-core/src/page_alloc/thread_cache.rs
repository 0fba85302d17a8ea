//! Per-thread caches in front of the shared freelists (the global allocator).
//!
//! Even uncontended, every compare-and-swap or atomic add is a locked
//! instruction of some 20 cycles; a shared-freelist allocate+free pair needs
//! four of them. So the process-wide allocator keeps, per thread and size
//! class, two private lists of slot indices, linked through the same link
//! table the shared freelists use, and touched only by their thread (relaxed
//! loads and stores: plain moves):
//!
//! * the **free list**: slots this thread freed, reused first (LIFO, warm in
//!   cache). When it holds [`flush_limit`] slots (at most 128, at most 256 KiB),
//!   it goes to the thread's shard as one chain, one CAS.
//! * the **alloc list**: a whole chain taken from the shared freelists in one
//!   CAS ([`Freelist::take_all`](super::freelist::Freelist::take_all)), or a
//!   freshly carved chunk, consumed by later allocations.
//!
//! The counters (allocations, frees) of a thread live here too, written only
//! by their thread and summed by [`PageAllocator::stats`](super::PageAllocator::stats)
//! through a registry of live caches. When a thread exits its cache gives every
//! slot back to the shared freelists and folds its counters into the class.
//!
//! The cost: a thread may hold up to one chunk (about 1 MiB) per class it
//! allocated from, plus its free list, that other threads cannot use until it
//! flushes or exits (mimalloc's thread-owned pages make the same trade).

use super::freelist::{LIVE, NIL};
use super::size_class::NUM_CLASSES;
use super::slab_class::SlabClass;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots a thread's free list of a class may hold before it is flushed.
pub fn flush_limit(slot_size: usize) -> u32 {
    ((256 * 1024) / slot_size).clamp(4, 128) as u32
}

/// One class of one thread. Written only by the owning thread; the counters
/// are read by others.
#[derive(Default)]
pub(crate) struct LocalClass {
    free_head: AtomicU32,
    free_tail: AtomicU32,
    free_count: AtomicU32,
    alloc_head: AtomicU32,
    allocs: AtomicU64,
    frees: AtomicU64,
}

/// Increment by the single writer: a load and a store, no locked instruction.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl LocalClass {
    fn new() -> LocalClass {
        LocalClass {
            free_head: AtomicU32::new(NIL),
            free_tail: AtomicU32::new(NIL),
            alloc_head: AtomicU32::new(NIL),
            ..LocalClass::default()
        }
    }

    /// (allocations, frees) counted by this thread.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.allocs.load(Ordering::Relaxed),
            self.frees.load(Ordering::Relaxed),
        )
    }

    /// A free slot of `class` for the owning thread, marked LIVE: its index
    /// and address.
    #[inline]
    pub fn take(
        &self,
        class: &SlabClass,
        shard: usize,
    ) -> crate::error::Result<(u32, std::ptr::NonNull<u8>)> {
        let f = self.free_head.load(Ordering::Relaxed);
        let (index, from_free) = if f != NIL {
            (f, true)
        } else {
            let a = self.alloc_head.load(Ordering::Relaxed);
            (
                if a != NIL {
                    a
                } else {
                    class.take_chain(shard)?
                },
                false,
            )
        };
        let (link, ptr) = class.slot(index);
        let next = link.load(Ordering::Relaxed);
        link.store(LIVE, Ordering::Relaxed);
        if from_free {
            self.free_head.store(next, Ordering::Relaxed);
            let n = self.free_count.load(Ordering::Relaxed) - 1;
            self.free_count.store(n, Ordering::Relaxed);
            if n == 0 {
                self.free_tail.store(NIL, Ordering::Relaxed);
            }
        } else {
            self.alloc_head.store(next, Ordering::Relaxed);
        }
        bump(&self.allocs);
        Ok((index, ptr))
    }

    /// Takes back a slot the owning thread frees (already checked).
    #[inline]
    pub fn give(&self, class: &SlabClass, shard: usize, index: u32, link: &AtomicU32) {
        let head = self.free_head.load(Ordering::Relaxed);
        link.store(head, Ordering::Relaxed);
        self.free_head.store(index, Ordering::Relaxed);
        if head == NIL {
            self.free_tail.store(index, Ordering::Relaxed);
        }
        let n = self.free_count.load(Ordering::Relaxed) + 1;
        bump(&self.frees);
        if n >= class.flush_limit() {
            let tail = self.free_tail.load(Ordering::Relaxed);
            class.give_chain(shard, index, tail);
            self.free_head.store(NIL, Ordering::Relaxed);
            self.free_tail.store(NIL, Ordering::Relaxed);
            self.free_count.store(0, Ordering::Relaxed);
        } else {
            self.free_count.store(n, Ordering::Relaxed);
        }
    }

    /// Gives every cached slot back to the shared freelists.
    pub fn drain(&self, class: &SlabClass, shard: usize) {
        let f = self.free_head.swap(NIL, Ordering::Relaxed);
        if f != NIL {
            class.give_chain(shard, f, self.free_tail.load(Ordering::Relaxed));
        }
        self.free_tail.store(NIL, Ordering::Relaxed);
        self.free_count.store(0, Ordering::Relaxed);
        let a = self.alloc_head.swap(NIL, Ordering::Relaxed);
        if a != NIL {
            let mut last = a;
            loop {
                let next = class.next_of(last);
                if next == NIL {
                    break;
                }
                last = next;
            }
            class.give_chain(shard, a, last);
        }
    }
}

/// The cache of one thread: one [`LocalClass`] per size class.
pub(crate) struct ThreadCache {
    pub shard: usize,
    pub classes: Box<[LocalClass]>,
}

impl ThreadCache {
    pub fn new(shard: usize) -> ThreadCache {
        ThreadCache {
            shard,
            classes: (0..NUM_CLASSES).map(|_| LocalClass::new()).collect(),
        }
    }
}

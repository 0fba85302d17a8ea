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
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Slots a thread's free list of a class may hold before it is flushed.
pub fn flush_limit(slot_size: usize) -> u32 {
    ((256 * 1024) / slot_size).clamp(4, 128) as u32
}

/// One class of one thread. Written only by the owning thread; the counters
/// are read by others.
///
/// The free list is intrusive: a slot on it holds, in its first 16 bytes, the
/// address of the next slot (8 bytes) and its own index (4 bytes). That is
/// sound because a slot on a thread's free list belongs to that thread alone
/// (its `Block` was given up, and no shared list holds it), and it makes an
/// allocation a single load from memory the allocation is about to zero
/// anyway, instead of a walk through the link table. The slot's link word
/// meanwhile holds [`NIL`] (not `LIVE`), so `free_raw` still refuses it.
#[derive(Default)]
pub(crate) struct LocalClass {
    /// First slot of the free list (null when empty).
    free_head: AtomicPtr<u8>,
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

/// Reads the (next, index) pair a free-list slot holds.
///
/// # Safety
/// `p` is a slot on the calling thread's free list (written by `give`).
#[inline]
unsafe fn read_entry(p: *mut u8) -> (*mut u8, u32) {
    // SAFETY: the caller's contract: `p` is a 64-byte aligned slot of at least
    // 64 bytes, owned by this thread, whose first 12 bytes `give` wrote.
    unsafe { (p.cast::<*mut u8>().read(), p.add(8).cast::<u32>().read()) }
}

impl LocalClass {
    fn new() -> LocalClass {
        LocalClass {
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
    #[inline(always)]
    pub fn take(
        &self,
        class: &SlabClass,
        shard: usize,
    ) -> crate::error::Result<(u32, NonNull<u8>)> {
        let f = self.free_head.load(Ordering::Relaxed);
        if let Some(p) = NonNull::new(f) {
            // SAFETY: a non-null free head is a slot on this thread's free list.
            let (next, index) = unsafe { read_entry(f) };
            self.free_head.store(next, Ordering::Relaxed);
            let n = self.free_count.load(Ordering::Relaxed);
            self.free_count.store(n - 1, Ordering::Relaxed);
            class.set_link(index, LIVE);
            bump(&self.allocs);
            return Ok((index, p));
        }
        let a = self.alloc_head.load(Ordering::Relaxed);
        let index = if a != NIL {
            a
        } else {
            class.take_chain(shard)?
        };
        let (link, ptr) = class.slot(index);
        self.alloc_head
            .store(link.load(Ordering::Relaxed), Ordering::Relaxed);
        link.store(LIVE, Ordering::Relaxed);
        bump(&self.allocs);
        Ok((index, ptr))
    }

    /// Takes back a slot of `class` the owning thread frees (already
    /// checked): slot `index` at `ptr`.
    #[inline(always)]
    pub fn give(&self, class: &SlabClass, shard: usize, index: u32, ptr: NonNull<u8>) {
        class.set_link(index, NIL);
        let head = self.free_head.load(Ordering::Relaxed);
        // SAFETY: the slot (64-byte aligned, at least 64 bytes) was just given
        // up by its owner and now belongs to this thread's free list alone.
        unsafe {
            ptr.as_ptr().cast::<*mut u8>().write(head);
            ptr.as_ptr().add(8).cast::<u32>().write(index);
        }
        self.free_head.store(ptr.as_ptr(), Ordering::Relaxed);
        let n = self.free_count.load(Ordering::Relaxed) + 1;
        bump(&self.frees);
        if n >= class.flush_limit() {
            self.flush(class, shard);
        } else {
            self.free_count.store(n, Ordering::Relaxed);
        }
    }

    /// Moves the whole free list to shard `shard` as one chain: links it
    /// through the link table (a walk of at most the flush limit), one CAS.
    #[cold]
    fn flush(&self, class: &SlabClass, shard: usize) {
        let mut p = self.free_head.swap(std::ptr::null_mut(), Ordering::Relaxed);
        self.free_count.store(0, Ordering::Relaxed);
        if p.is_null() {
            return;
        }
        // SAFETY: p is the head of this thread's free list.
        let (mut next, first) = unsafe { read_entry(p) };
        let mut last = first;
        while !next.is_null() {
            p = next;
            // SAFETY: every entry of the list is a slot on this thread's free list.
            let (n, index) = unsafe { read_entry(p) };
            class.set_link(last, index);
            last = index;
            next = n;
        }
        class.give_chain(shard, first, last);
    }

    /// Gives every cached slot back to the shared freelists.
    pub fn drain(&self, class: &SlabClass, shard: usize) {
        self.flush(class, shard);
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
    /// Inline (not boxed): one load fewer from the thread's pointer to a class.
    pub classes: [LocalClass; NUM_CLASSES],
}

impl ThreadCache {
    pub fn new(shard: usize) -> ThreadCache {
        ThreadCache {
            shard,
            classes: std::array::from_fn(|_| LocalClass::new()),
        }
    }
}

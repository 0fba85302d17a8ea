//! Layer 0: the CPU page allocator.
//!
//! Every page buffer ([`PageBuf`](crate::page_buf::PageBuf)) gets its memory
//! here. Pages come in few sizes and are allocated and freed often (each
//! copy-on-write of a shared page allocates one), from many threads, so small
//! pages are served by **size-class slabs** with **lock-free freelists**, and
//! large ones by a plain **mutex path**:
//!
//! * [`size_class`]: 36 slot sizes from 64 B to 64 KiB, all multiples of 64, so
//!   every page is 64-byte aligned.
//! * [`freelist`]: the lock-free stack of free slot indices, ABA-safe through a
//!   32-bit generation tag packed with the top index into one 64-bit CAS word;
//!   model-checked with loom (`tests/loom_freelist.rs`).
//! * [`slab_class`]: one class: chunks of about 1 MiB carved into slots, and
//!   [`SHARDS`] freelists so that threads do not contend on one head.
//! * [`thread_cache`]: per-thread lists in front of the shared freelists, for
//!   the process-wide allocator: the common allocate and free touch no shared
//!   line and execute no locked instruction.
//! * [`large`]: pages above 64 KiB, through the system allocator under a mutex.
//! * `zero`: clearing of small pages in whole aligned 64-byte lines, with
//!   the widest vector stores the CPU has.
//! * [`stats`]: live pages and bytes per class, allocations, frees, CAS
//!   retries, slow-path entries.
//!
//! The API hands out a [`Block`], an owned token (not `Clone`) naming the
//! memory; [`PageAllocator::free`] takes it back. Frees are checked: a block
//! that is not a live allocation of this allocator (a double free through
//! [`PageAllocator::free_raw`], or a foreign pointer) is an
//! [`ErrorCode::InvalidArgument`] error, never silent corruption (with one
//! exception on the global allocator, a slot on *another* thread's cache; see
//! `free_raw`).
//! `docs/allocator.md` explains the design and its measurements.

pub mod freelist;
pub mod large;
pub mod size_class;
pub mod slab_class;
pub mod stats;
pub mod sync;
pub mod thread_cache;
mod zero;

pub use slab_class::SHARDS;
pub use stats::{AllocStats, ClassStats};

use crate::error::{Error, ErrorCode, Result};
use large::LargeAlloc;
use size_class::{class_of, class_size, NUM_CLASSES};
use slab_class::SlabClass;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use thread_cache::ThreadCache;
use zero::zero_slot;

/// `Block::class` of a block from the large path.
const LARGE: u8 = u8::MAX;
/// Bit of a small block's class byte set when the block comes from
/// [`PageAllocator::global`]: the global allocator's ownership check on
/// [`PageAllocator::free`] is then a bit test on the token, no memory access
/// (classes number fewer than 64, so the bit is free; [`LARGE`] is tested
/// first).
const GLOBAL_BIT: u8 = 0x40;

/// An allocated page of memory: 64-byte aligned, `len` bytes, owned by whoever
/// holds the token until it is given back with [`PageAllocator::free`].
/// Dropping a `Block` without freeing it leaks the memory (the allocator can
/// not know its owner went away).
#[derive(Debug)]
pub struct Block {
    ptr: NonNull<u8>,
    /// Everything else in one word, so a `Block` is two words and travels in
    /// registers: bits 56..64 the class ([`LARGE`] for the large path; plus
    /// [`GLOBAL_BIT`] for a small block of the global allocator); for
    /// a class, bits 32..56 the length (at most 64 KiB) and bits 0..32 the
    /// slot index; for a large block, bits 0..56 the length.
    meta: u64,
}

/// Largest length a large block can carry in [`Block::meta`] (2^56 - 1).
const LEN_MASK: u64 = (1 << 56) - 1;

// SAFETY: a Block is the sole owner of its memory region (like a Box<[u8]>
// without drop glue); it exposes only a raw pointer, so sending or sharing the
// token across threads cannot create unsynchronised access by itself.
unsafe impl Send for Block {}
// SAFETY: as above; `&Block` gives out nothing but the pointer value.
unsafe impl Sync for Block {}

impl Block {
    /// Start of the memory (64-byte aligned).
    #[inline]
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes, as requested.
    #[inline]
    pub fn len(&self) -> usize {
        if self.class_byte() == LARGE {
            (self.meta & LEN_MASK) as usize
        } else {
            ((self.meta >> 32) & 0xFF_FFFF) as usize
        }
    }

    /// Whether the block has no bytes (never: zero-length requests are refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size class serving this block, `None` for the large path.
    pub fn class(&self) -> Option<usize> {
        let c = self.class_byte();
        (c != LARGE).then_some((c & !GLOBAL_BIT) as usize)
    }

    /// A block of size class `class` (len <= 64 KiB).
    #[inline]
    fn small(ptr: NonNull<u8>, len: usize, class: u8, index: u32) -> Block {
        Block {
            ptr,
            meta: (u64::from(class) << 56) | ((len as u64) << 32) | u64::from(index),
        }
    }

    /// A large block (len < 2^56, checked by the caller).
    #[inline]
    fn large(ptr: NonNull<u8>, len: usize) -> Block {
        Block {
            ptr,
            meta: (u64::from(LARGE) << 56) | (len as u64 & LEN_MASK),
        }
    }

    #[inline]
    fn class_byte(&self) -> u8 {
        (self.meta >> 56) as u8
    }

    #[inline]
    fn index(&self) -> u32 {
        self.meta as u32
    }

    /// Gives up the token, returning the pointer; free it with
    /// [`PageAllocator::free_raw`] (same pointer and length).
    pub fn into_raw(self) -> (NonNull<u8>, usize) {
        (self.ptr, self.len())
    }
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// The shard of the calling thread: threads are numbered in order of first
/// use, round robin over the shards.
#[inline]
fn shard_no() -> usize {
    SHARD
        .try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            let n = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(n);
            n
        })
        .unwrap_or(0)
}

/// A thread's cache of the global allocator, registered while the thread lives.
struct LocalHandle {
    cache: Arc<ThreadCache>,
}

impl LocalHandle {
    fn register() -> LocalHandle {
        let g = PageAllocator::global();
        let cache = Arc::new(ThreadCache::new(shard_no(), &g.classes));
        g.registry().push(Arc::clone(&cache));
        LocalHandle { cache }
    }
}

impl Drop for LocalHandle {
    fn drop(&mut self) {
        // The thread is exiting: stop the fast path from seeing the cache,
        // give its slots back and fold its counters into the classes,
        // atomically with respect to `stats`.
        FAST.with(|f| f.set(std::ptr::null()));
        let a = PageAllocator::global();
        let mut reg = a.registry();
        for (c, lc) in self.cache.classes.iter().enumerate() {
            lc.drain(&a.classes[c], self.cache.shard);
            let (al, fr) = lc.counts();
            a.classes[c].add_counts(al, fr);
        }
        reg.retain(|x| !Arc::ptr_eq(x, &self.cache));
    }
}

thread_local! {
    static CACHE: LocalHandle = LocalHandle::register();
    /// The calling thread's cache, or null before [`CACHE`] is initialised
    /// and from the start of its destructor on. A `const` cell without drop
    /// glue: reading it is one TLS-relative load, with none of the lazy
    /// initialisation and destructor-state checks of `CACHE.try_with`.
    static FAST: Cell<*const ThreadCache> = const { Cell::new(std::ptr::null()) };
}

/// The calling thread's cache of the global allocator, if it has one alive.
#[inline(always)]
fn local_cache() -> Option<&'static ThreadCache> {
    let p = FAST.with(|f| f.get());
    if !p.is_null() {
        // SAFETY: a non-null FAST points into the `Arc<ThreadCache>` held by
        // this thread's live `CACHE` handle; `LocalHandle::drop` nulls FAST
        // before it gives anything back, and the registry keeps a second
        // `Arc`, so the cache outlives every use the calling thread can make
        // of the reference. The 'static is a lie only towards other threads,
        // which never see it (the function returns the caller's own cache
        // and the reference is not `Send`-stored anywhere).
        return Some(unsafe { &*p });
    }
    local_cache_slow()
}

/// First use on this thread: initialise [`CACHE`] (which sets [`FAST`]);
/// `None` while the thread is exiting.
#[cold]
#[inline(never)]
fn local_cache_slow() -> Option<&'static ThreadCache> {
    let p = CACHE.try_with(|h| Arc::as_ptr(&h.cache)).ok()?;
    FAST.with(|f| f.set(p));
    // SAFETY: as in `local_cache`: `p` is this thread's live cache.
    Some(unsafe { &*p })
}

/// The error of a `Block` whose size class does not exist or cannot hold it.
#[cold]
#[inline(never)]
fn bad_class() -> Error {
    Error::invalid("free of a block with a bad size class")
}

/// The page allocator: size-class slabs with lock-free freelists for pages up
/// to 64 KiB, a mutex path above. Memory of the slabs is kept (and reused)
/// until the allocator is dropped; [`PageAllocator::global`] lives for the
/// whole process.
pub struct PageAllocator {
    classes: Box<[SlabClass]>,
    large: LargeAlloc,
    /// Whether thread caches serve this allocator (the global one only).
    cached: bool,
    /// Live thread caches (for statistics).
    registry: Mutex<Vec<Arc<ThreadCache>>>,
}

impl Default for PageAllocator {
    fn default() -> Self {
        PageAllocator::new()
    }
}

impl std::fmt::Debug for PageAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageAllocator({} classes)", self.classes.len())
    }
}

impl PageAllocator {
    /// A fresh allocator with no memory reserved yet. It serves every thread
    /// from the shared (sharded, lock-free) freelists; only
    /// [`PageAllocator::global`] adds per-thread caches in front.
    pub fn new() -> PageAllocator {
        PageAllocator {
            classes: (0..NUM_CLASSES)
                .map(|c| SlabClass::new(class_size(c)))
                .collect(),
            large: LargeAlloc::default(),
            cached: false,
            registry: Mutex::new(Vec::new()),
        }
    }

    /// The process-wide allocator every [`PageBuf`](crate::page_buf::PageBuf)
    /// uses, with per-thread caches (see [`thread_cache`]).
    pub fn global() -> &'static PageAllocator {
        static GLOBAL: OnceLock<PageAllocator> = OnceLock::new();
        GLOBAL.get_or_init(|| PageAllocator {
            cached: true,
            ..PageAllocator::new()
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ThreadCache>>> {
        // Registry updates are single push/retain calls: consistent even
        // after a panic elsewhere.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot of `class`: from the thread cache when this allocator has them
    /// and the thread's cache is alive, else from the shared freelists.
    #[inline]
    fn take_slot(&self, class: usize) -> Result<(NonNull<u8>, u32)> {
        let sc = &self.classes[class];
        if self.cached {
            if let Some(tc) = local_cache() {
                let (ptr, index) = tc.classes[class].take(sc, tc.shard)?;
                return Ok((ptr, index));
            }
        }
        sc.alloc(shard_no())
    }

    /// The calling thread's cache, if this allocator has them and the
    /// thread's is set up and alive (else the general paths handle it).
    #[inline(always)]
    fn fast_cache(&self) -> Option<&ThreadCache> {
        if !self.cached {
            return None;
        }
        let p = FAST.with(|f| f.get());
        // SAFETY: as in `local_cache`: a non-null FAST is the calling thread's
        // live cache, and `self` is the global allocator it serves (only the
        // global allocator is `cached`).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The fast path of an allocation: a small page from the top of the
    /// calling thread's free list (no atomic read-modify-write, no call);
    /// everything else goes to [`PageAllocator::alloc_general`].
    #[inline(always)]
    fn alloc(&self, len: usize, zeroed: bool) -> Result<Block> {
        if let Some(class) = class_of(len) {
            if let Some(tc) = self.fast_cache() {
                if let Some((ptr, index)) = tc.classes[class].pop() {
                    if zeroed {
                        zero_slot(ptr, len);
                    }
                    return Ok(Block::small(ptr, len, class as u8 | GLOBAL_BIT, index));
                }
            }
        }
        self.alloc_general(len, zeroed)
    }

    /// Every allocation the fast path does not serve.
    #[inline(never)]
    fn alloc_general(&self, len: usize, zeroed: bool) -> Result<Block> {
        if len == 0 {
            return Err(Error::invalid("allocation of a zero-length page"));
        }
        if let Some(class) = class_of(len) {
            match self.take_slot(class) {
                Ok((ptr, index)) => {
                    if zeroed {
                        zero_slot(ptr, len);
                    }
                    let tag = if self.cached { GLOBAL_BIT } else { 0 };
                    return Ok(Block::small(ptr, len, class as u8 | tag, index));
                }
                // A full chunk table: serve it from the large path instead.
                Err(e) if e.code == ErrorCode::OutOfMemory => {}
                Err(e) => return Err(e),
            }
        }
        if len as u64 > LEN_MASK {
            return Err(Error::invalid(format!("page size {len} is too large")));
        }
        let ptr = self.large.alloc(len, zeroed)?;
        Ok(Block::large(ptr, len))
    }

    /// A zeroed, 64-byte aligned block of `len` (> 0) bytes.
    #[inline]
    pub fn alloc_zeroed(&self, len: usize) -> Result<Block> {
        self.alloc(len, true)
    }

    /// A 64-byte aligned block of `len` (> 0) bytes with unspecified contents
    /// (for callers that overwrite it at once).
    #[inline]
    pub fn alloc_uninit(&self, len: usize) -> Result<Block> {
        self.alloc(len, false)
    }

    /// Gives a block back. An error (and nothing freed) if the block is not a
    /// live allocation of this allocator.
    ///
    /// The fast path (a small block of the global allocator freed by a thread
    /// with a live cache) pushes the slot on the thread's free list. Ownership:
    /// only the global allocator sets `GLOBAL_BIT`, and a `Block` cannot be
    /// forged or copied in safe code, so a set bit proves the block is a live
    /// slot of class `cb & !GLOBAL_BIT` of this allocator, at the index it
    /// carries: no chunk-table lookup. No double-free check either: a `Block`
    /// is an owned token (not `Clone`), so freeing one twice takes unsafe
    /// forgery. Debug builds check both anyway.
    #[inline]
    pub fn free(&self, block: Block) -> Result<()> {
        let cb = block.class_byte();
        if cb != LARGE && cb & GLOBAL_BIT != 0 {
            if let Some(tc) = self.fast_cache() {
                let c = (cb & !GLOBAL_BIT) as usize;
                if let Some(lc) = tc.classes.get(c) {
                    debug_assert!(self.classes[c].check(block.ptr, block.index()).is_ok());
                    debug_assert_eq!(self.classes[c].next_of(block.index()), freelist::LIVE);
                    debug_assert!(!lc.contains(block.ptr.as_ptr()), "double free");
                    // SAFETY: by the ownership argument above, the block is a
                    // live slot of class `c` of this (the global) allocator at
                    // index `block.index()`, and the caller gives it up.
                    if unsafe { lc.push(block.ptr, block.index()) } {
                        lc.flush(&self.classes[c], tc.shard);
                    }
                    return Ok(());
                }
            }
        }
        self.free_general(block)
    }

    /// Every free the fast path does not take.
    #[inline(never)]
    fn free_general(&self, block: Block) -> Result<()> {
        let cb = block.class_byte();
        if cb == LARGE {
            return self.large.free(block.ptr, block.len());
        }
        if self.cached {
            // The global allocator, called by a thread without a live cache
            // (exiting): the shared freelists, trusting the tag bit as above.
            if cb & GLOBAL_BIT != 0 {
                let c = (cb & !GLOBAL_BIT) as usize;
                let Some(class) = self.classes.get(c) else {
                    return Err(bad_class());
                };
                if let Some(tc) = local_cache() {
                    // First use on this thread: the cache was just set up.
                    // SAFETY: as in `free`.
                    if unsafe { tc.classes[c].push(block.ptr, block.index()) } {
                        tc.classes[c].flush(class, tc.shard);
                    }
                    return Ok(());
                }
                return class.free(block.ptr, block.index(), shard_no());
            }
            return Err(bad_class());
        }
        let class = self
            .classes
            .get(cb as usize)
            .filter(|c| c.slot_size() >= block.len())
            .ok_or_else(bad_class)?;
        class.free(block.ptr, block.index(), shard_no())
    }

    /// Frees the block at `ptr` of `len` bytes, as returned by
    /// [`Block::into_raw`]. Slower than [`PageAllocator::free`] (it scans the
    /// class's chunk table to find the slot). A pointer that is not the start
    /// of a live block of this allocator of that size class is an error: a
    /// double free is detected and refused. On the global allocator, a block
    /// already freed sits for a while on its freeing thread's cache, which
    /// only that thread can inspect: freeing it again is refused on that
    /// thread, but from another thread it is the misuse below.
    ///
    /// # Safety
    /// If `ptr` is the start of a block that is live but owned by someone
    /// else, that owner's memory is freed under it: the caller must own the
    /// block at `ptr`. (On the global allocator, a slot in another thread's
    /// cache counts as owned by that thread.)
    pub unsafe fn free_raw(&self, ptr: *mut u8, len: usize) -> Result<()> {
        let nn = NonNull::new(ptr).ok_or_else(|| Error::invalid("free of a null pointer"))?;
        if let Some(class) = class_of(len) {
            if let Some(index) = self.classes[class].index_of(ptr) {
                if self
                    .fast_cache()
                    .is_some_and(|tc| tc.classes[class].contains(ptr))
                {
                    return Err(Error::invalid(format!(
                        "double free of {ptr:p}: it is on this thread's cache"
                    )));
                }
                // The strict path: a CAS on the slot's link decides between
                // racing frees, and the slot goes to the shared freelists.
                return self.classes[class].free(nn, index, shard_no());
            }
        }
        if self.large.len_of(ptr).is_some() {
            return self.large.free(nn, len);
        }
        Err(Error::invalid(format!(
            "free of {ptr:p} ({len} bytes): not a block of this allocator"
        )))
    }

    /// Statistics per class and for the large path.
    pub fn stats(&self) -> AllocStats {
        let reg = self.registry();
        let mut extra = vec![(0u64, 0u64); NUM_CLASSES];
        for tc in reg.iter() {
            for (e, lc) in extra.iter_mut().zip(tc.classes.iter()) {
                let (a, f) = lc.counts();
                e.0 += a;
                e.1 += f;
            }
        }
        AllocStats {
            classes: self
                .classes
                .iter()
                .zip(extra)
                .map(|(c, e)| c.stats(e))
                .collect(),
            large: self.large.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_zeroed_and_distinct() {
        let a = PageAllocator::new();
        let mut blocks = Vec::new();
        for len in [
            1usize, 63, 64, 65, 1000, 1024, 4096, 65_536, 65_537, 300_000,
        ] {
            for _ in 0..3 {
                let b = a.alloc_zeroed(len).unwrap();
                assert_eq!(b.ptr().as_ptr() as usize % 64, 0);
                // SAFETY: the block owns len initialised (zeroed) bytes.
                let s = unsafe { std::slice::from_raw_parts_mut(b.ptr().as_ptr(), len) };
                assert!(s.iter().all(|&x| x == 0));
                s.fill(0xAB);
                blocks.push(b);
            }
        }
        let mut starts: Vec<(usize, usize)> = blocks
            .iter()
            .map(|b| (b.ptr().as_ptr() as usize, b.len()))
            .collect();
        starts.sort();
        for w in starts.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap");
        }
        for b in blocks {
            a.free(b).unwrap();
        }
        let t = a.stats().totals();
        assert_eq!(t.live_pages, 0);
        assert_eq!(t.allocations, 30);
        assert_eq!(t.frees, 30);
    }

    #[test]
    fn reused_slots_come_back_zeroed() {
        let a = PageAllocator::new();
        let b = a.alloc_zeroed(256).unwrap();
        // SAFETY: the block owns 256 bytes.
        unsafe { b.ptr().as_ptr().write_bytes(0xFF, 256) };
        let p = b.ptr();
        a.free(b).unwrap();
        let c = a.alloc_zeroed(256).unwrap();
        assert_eq!(c.ptr(), p, "LIFO reuse of the same slot");
        // SAFETY: the block owns 256 bytes.
        let s = unsafe { std::slice::from_raw_parts(c.ptr().as_ptr(), 256) };
        assert!(s.iter().all(|&x| x == 0));
        a.free(c).unwrap();
    }

    #[test]
    fn zero_length_requests_are_refused() {
        let a = PageAllocator::new();
        assert_eq!(
            a.alloc_zeroed(0).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn double_free_through_raw_is_an_error() {
        let a = PageAllocator::new();
        for len in [100usize, 200_000] {
            let (p, l) = a.alloc_zeroed(len).unwrap().into_raw();
            // SAFETY: we own the block from into_raw.
            unsafe { a.free_raw(p.as_ptr(), l) }.unwrap();
            // SAFETY: the pointer is no longer live; free_raw must refuse it.
            let e = unsafe { a.free_raw(p.as_ptr(), l) }.unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "len {len}: {e}");
        }
        assert_eq!(a.stats().totals().live_pages, 0);
    }

    #[test]
    fn foreign_and_interior_pointers_are_refused() {
        let a = PageAllocator::new();
        let other = PageAllocator::new();
        let b = a.alloc_zeroed(1024).unwrap();
        let ob = other.alloc_zeroed(1024).unwrap();
        // SAFETY: these pointers are not blocks of `a` (interior, foreign,
        // stack); free_raw must refuse them without touching anything.
        unsafe {
            assert!(a.free_raw(b.ptr().as_ptr().add(64), 1024).is_err());
            assert!(a.free_raw(ob.ptr().as_ptr(), 1024).is_err());
            let mut local = [0u8; 8];
            assert!(a.free_raw(local.as_mut_ptr(), 8).is_err());
            assert!(a.free_raw(std::ptr::null_mut(), 8).is_err());
        }
        // A block of `other` given to `a` by token is refused too.
        assert!(a.free(ob).is_err());
        assert_eq!(a.stats().totals().live_pages, 1);
        a.free(b).unwrap();
    }

    #[test]
    fn global_and_private_blocks_are_refused_by_the_other_allocator() {
        // The global allocator's typed free trusts its own tag bit instead of
        // a chunk-table lookup; a block of another allocator must still be
        // refused there, and a global block elsewhere.
        let g = PageAllocator::global();
        let a = PageAllocator::new();
        let len = 3008; // the 3072 B class, used by no other test here
        let gb = g.alloc_zeroed(len).unwrap();
        let ab = a.alloc_zeroed(len).unwrap();
        assert_eq!(
            gb.class(),
            ab.class(),
            "the tag bit is not part of the class"
        );
        assert_eq!(a.free(gb).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(g.free(ab).unwrap_err().code, ErrorCode::InvalidArgument);
        // Both were leaked by the refused frees; `a` still counts its one.
        assert_eq!(a.stats().totals().live_pages, 1);
    }

    #[test]
    fn global_blocks_freed_on_other_threads_and_after_their_thread_exits() {
        // Oracle: every block keeps the pattern its allocating thread wrote
        // until it is freed, wherever and whenever that happens (a thread's
        // cache is gone once it exits: its blocks take the shared path).
        let g = PageAllocator::global();
        let len = 1984; // the 2048 B class, used by no other test here
        let blocks: Vec<Block> = std::thread::spawn(move || {
            (0..300u32)
                .map(|i| {
                    let b = g.alloc_uninit(len).unwrap();
                    // SAFETY: the block owns len bytes.
                    unsafe { b.ptr().as_ptr().write_bytes(i as u8, len) };
                    b
                })
                .collect()
        })
        .join()
        .unwrap();
        let (left, right): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let check_and_free = move |v: Vec<(usize, Block)>| {
            for (i, b) in v {
                // SAFETY: the block owns len initialised bytes.
                let s = unsafe { std::slice::from_raw_parts(b.ptr().as_ptr(), len) };
                assert!(s.iter().all(|&x| x == i as u8), "block {i} was reused");
                g.free(b).unwrap();
            }
        };
        std::thread::spawn(move || check_and_free(left))
            .join()
            .unwrap();
        check_and_free(right);
    }

    #[test]
    fn a_global_block_freed_then_freed_raw_on_the_same_thread_is_refused() {
        // The typed free leaves the slot on this thread's cache with its link
        // still LIVE; free_raw must find it there and refuse the second free.
        let g = PageAllocator::global();
        let len = 40_960; // a class used by no other test here
        let b = g.alloc_zeroed(len).unwrap();
        let p = b.ptr().as_ptr();
        g.free(b).unwrap();
        // SAFETY: a double free, which free_raw must detect and refuse
        // without touching anything.
        let e = unsafe { g.free_raw(p, len) }.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
        // The slot is still usable exactly once.
        let b1 = g.alloc_zeroed(len).unwrap();
        let b2 = g.alloc_zeroed(len).unwrap();
        assert_ne!(b1.ptr(), b2.ptr());
        assert!(b1.ptr().as_ptr() == p || b2.ptr().as_ptr() == p);
        g.free(b1).unwrap();
        g.free(b2).unwrap();
    }

    #[test]
    fn stats_count_live_pages_and_bytes_per_class() {
        let a = PageAllocator::new();
        let b1 = a.alloc_zeroed(1000).unwrap(); // 1024 class
        let b2 = a.alloc_zeroed(1024).unwrap();
        let b3 = a.alloc_zeroed(100_000).unwrap(); // large
        let s = a.stats();
        let c = class_of(1024).unwrap();
        assert_eq!(s.classes[c].live_pages, 2);
        assert_eq!(s.classes[c].live_bytes, 2048);
        assert_eq!(s.classes[c].slow_path, 1, "one chunk carved");
        assert!(s.classes[c].reserved_bytes >= 512 * 1024);
        assert_eq!(s.large.live_pages, 1);
        assert_eq!(s.large.live_bytes, 100_000);
        for b in [b1, b2, b3] {
            a.free(b).unwrap();
        }
        let s = a.stats();
        assert_eq!(s.classes[c].live_pages, 0);
        assert_eq!(s.classes[c].frees, 2);
        assert_eq!(s.large.frees, 1);
    }
}

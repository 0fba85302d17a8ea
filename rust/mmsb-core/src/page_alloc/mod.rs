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
//! * [`large`]: pages above 64 KiB, through the system allocator under a mutex.
//! * [`stats`]: live pages and bytes per class, allocations, frees, CAS
//!   retries, slow-path entries.
//!
//! The API hands out a [`Block`], an owned token (not `Clone`) naming the
//! memory; [`PageAllocator::free`] takes it back. Frees are checked: a block
//! that is not a live allocation of this allocator (a double free through
//! [`PageAllocator::free_raw`], or a foreign pointer) is an
//! [`ErrorCode::InvalidArgument`] error, never silent corruption.
//! `docs/allocator.md` explains the design and its measurements.

pub mod freelist;
pub mod large;
pub mod size_class;
pub mod slab_class;
pub mod stats;
pub mod sync;

pub use slab_class::SHARDS;
pub use stats::{AllocStats, ClassStats};

use crate::error::{Error, ErrorCode, Result};
use large::LargeAlloc;
use size_class::{class_of, class_size, NUM_CLASSES};
use slab_class::SlabClass;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `Block::class` of a block from the large path.
const LARGE: u8 = u8::MAX;

/// An allocated page of memory: 64-byte aligned, `len` bytes, owned by whoever
/// holds the token until it is given back with [`PageAllocator::free`].
/// Dropping a `Block` without freeing it leaks the memory (the allocator can
/// not know its owner went away).
#[derive(Debug)]
pub struct Block {
    ptr: NonNull<u8>,
    len: usize,
    index: u32,
    class: u8,
}

// SAFETY: a Block is the sole owner of its memory region (like a Box<[u8]>
// without drop glue); it exposes only a raw pointer, so sending or sharing the
// token across threads cannot create unsynchronised access by itself.
unsafe impl Send for Block {}
// SAFETY: as above; `&Block` gives out nothing but the pointer value.
unsafe impl Sync for Block {}

impl Block {
    /// Start of the memory (64-byte aligned).
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes, as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block has no bytes (never: zero-length requests are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size class serving this block, `None` for the large path.
    pub fn class(&self) -> Option<usize> {
        (self.class != LARGE).then_some(self.class as usize)
    }

    /// Gives up the token, returning the pointer; free it with
    /// [`PageAllocator::free_raw`] (same pointer and length).
    pub fn into_raw(self) -> (NonNull<u8>, usize) {
        (self.ptr, self.len)
    }
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// The shard of the calling thread: threads are numbered in order of first
/// use, round robin over the shards.
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

/// The page allocator: size-class slabs with lock-free freelists for pages up
/// to 64 KiB, a mutex path above. Memory of the slabs is kept (and reused)
/// until the allocator is dropped; [`PageAllocator::global`] lives for the
/// whole process.
pub struct PageAllocator {
    classes: Box<[SlabClass]>,
    large: LargeAlloc,
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
    /// A fresh allocator with no memory reserved yet.
    pub fn new() -> PageAllocator {
        PageAllocator {
            classes: (0..NUM_CLASSES)
                .map(|c| SlabClass::new(class_size(c)))
                .collect(),
            large: LargeAlloc::default(),
        }
    }

    /// The process-wide allocator every [`PageBuf`](crate::page_buf::PageBuf) uses.
    pub fn global() -> &'static PageAllocator {
        static GLOBAL: OnceLock<PageAllocator> = OnceLock::new();
        GLOBAL.get_or_init(PageAllocator::new)
    }

    fn alloc(&self, len: usize, zeroed: bool) -> Result<Block> {
        if len == 0 {
            return Err(Error::invalid("allocation of a zero-length page"));
        }
        if let Some(class) = class_of(len) {
            match self.classes[class].alloc(shard_no()) {
                Ok((ptr, index)) => {
                    if zeroed {
                        // SAFETY: ptr is the start of a slot of at least `len`
                        // bytes that we now own exclusively.
                        unsafe { ptr.as_ptr().write_bytes(0, len) };
                    }
                    return Ok(Block {
                        ptr,
                        len,
                        index,
                        class: class as u8,
                    });
                }
                // A full chunk table: serve it from the large path instead.
                Err(e) if e.code == ErrorCode::OutOfMemory => {}
                Err(e) => return Err(e),
            }
        }
        let ptr = self.large.alloc(len, zeroed)?;
        Ok(Block {
            ptr,
            len,
            index: 0,
            class: LARGE,
        })
    }

    /// A zeroed, 64-byte aligned block of `len` (> 0) bytes.
    pub fn alloc_zeroed(&self, len: usize) -> Result<Block> {
        self.alloc(len, true)
    }

    /// A 64-byte aligned block of `len` (> 0) bytes with unspecified contents
    /// (for callers that overwrite it at once).
    pub fn alloc_uninit(&self, len: usize) -> Result<Block> {
        self.alloc(len, false)
    }

    /// Gives a block back. An error (and nothing freed) if the block is not a
    /// live allocation of this allocator.
    pub fn free(&self, block: Block) -> Result<()> {
        if block.class == LARGE {
            return self.large.free(block.ptr, block.len);
        }
        let class = self
            .classes
            .get(block.class as usize)
            .filter(|c| c.slot_size() >= block.len)
            .ok_or_else(|| Error::invalid("free of a block with a bad size class"))?;
        class.free(block.ptr, block.index, shard_no())
    }

    /// Frees the block at `ptr` of `len` bytes, as returned by
    /// [`Block::into_raw`]. Slower than [`PageAllocator::free`] (it scans the
    /// class's chunk table to find the slot). A pointer that is not the start
    /// of a live block of this allocator of that size class is an error: a
    /// double free is detected and refused.
    ///
    /// # Safety
    /// If `ptr` is the start of a block that is live but owned by someone
    /// else, that owner's memory is freed under it: the caller must own the
    /// block at `ptr`.
    pub unsafe fn free_raw(&self, ptr: *mut u8, len: usize) -> Result<()> {
        let nn = NonNull::new(ptr).ok_or_else(|| Error::invalid("free of a null pointer"))?;
        if let Some(class) = class_of(len) {
            if let Some(index) = self.classes[class].index_of(ptr) {
                return self.free(Block {
                    ptr: nn,
                    len,
                    index,
                    class: class as u8,
                });
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
        AllocStats {
            classes: self.classes.iter().map(SlabClass::stats).collect(),
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

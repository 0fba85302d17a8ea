//! One size class: slabs carved from large aligned chunks, served through
//! sharded lock-free freelists.
//!
//! A chunk is one system allocation (4 KiB aligned) of `2^shift` slots of the
//! class's slot size (between 512 KiB and 1 MiB of slots, at least 16 slots),
//! followed by its link table: one `u32` per slot (see
//! [`freelist`](super::freelist) for why links live outside the slots). A slot
//! is named by a 32-bit index, `chunk << shift | slot`. Chunks are published
//! in a fixed table (append-only, under the grow mutex) and never returned to
//! the system while the allocator lives, so an index read from any freelist
//! always names valid memory.
//!
//! Each class has [`SHARDS`] freelists, each on its own cache lines with its
//! own counters; a thread allocates from and frees to the shard its thread
//! number picks, so two threads working side by side touch no common line.
//! An empty shard is the slow path: steal a slot from the other shards, and
//! only if all are empty take the grow mutex and carve a new chunk, whose
//! slots go onto the shard as one chain (a single CAS). Carving touches only
//! the link table, so the pages of a fresh chunk become resident when they are
//! first used, not when the chunk is reserved.

use super::freelist::{Freelist, Links, LIVE, NIL};
use super::stats::ClassStats;
use super::sync::{AtomicU32, Ordering};
use crate::error::{Error, ErrorCode, Result};
use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize};
use std::sync::Mutex;

/// Freelists per class (threads pick one by thread number).
pub const SHARDS: usize = 8;
/// Most chunks one class carves; past this the class's requests take the
/// large path (at 512 KiB to 1 MiB a chunk, 2 to 4 GiB of slots per class).
pub const MAX_CHUNKS: usize = 4096;
/// Target bytes of slots per chunk.
const CHUNK_TARGET: usize = 1 << 20;
/// Alignment of a chunk (an OS page; slots are multiples of 64 bytes).
const CHUNK_ALIGN: usize = 4096;

/// One freelist with its counters, alone on two cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    list: Freelist,
    allocs: AtomicU64,
    frees: AtomicU64,
    retries: AtomicU64,
}

/// A size class.
pub(crate) struct SlabClass {
    slot_size: usize,
    shift: u32,
    shards: Box<[Shard]>,
    /// Chunk base addresses; entries below `nchunks` are set.
    chunks: Box<[AtomicPtr<u8>]>,
    nchunks: AtomicUsize,
    grow: Mutex<()>,
    slow_path: AtomicU64,
    /// Slots a thread cache's free list holds before flushing (see
    /// [`flush_limit`](super::thread_cache::flush_limit)).
    flush_limit: u32,
}

impl SlabClass {
    /// A class of `slot_size`-byte slots (a multiple of 64, at most 64 KiB).
    pub fn new(slot_size: usize) -> SlabClass {
        let per_chunk = (CHUNK_TARGET / slot_size).max(16);
        let shift = usize::BITS - 1 - per_chunk.leading_zeros(); // floor(log2)
        SlabClass {
            slot_size,
            shift,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            chunks: (0..MAX_CHUNKS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            nchunks: AtomicUsize::new(0),
            grow: Mutex::new(()),
            slow_path: AtomicU64::new(0),
            flush_limit: super::thread_cache::flush_limit(slot_size),
        }
    }

    #[inline]
    fn slots_per_chunk(&self) -> usize {
        1 << self.shift
    }

    #[inline]
    fn slot_bytes(&self) -> usize {
        self.slot_size << self.shift
    }

    fn chunk_layout(&self) -> Layout {
        let bytes = self.slot_bytes() + 4 * self.slots_per_chunk();
        // Cannot fail: at most ~1 MiB + 64 KiB, a power-of-two alignment.
        Layout::from_size_align(bytes, CHUNK_ALIGN).unwrap_or(Layout::new::<u8>())
    }

    /// Base of chunk `c`, which must be below `nchunks`.
    #[inline]
    fn chunk(&self, c: usize) -> *mut u8 {
        self.chunks[c].load(Ordering::Acquire)
    }

    /// The link word and the address of slot `index` (a published slot),
    /// computed together (one chunk-table lookup).
    #[inline]
    pub fn slot(&self, index: u32) -> (&AtomicU32, NonNull<u8>) {
        let base = self.chunk((index >> self.shift) as usize);
        let slot = index as usize & (self.slots_per_chunk() - 1);
        // SAFETY: `index` names a slot of a published chunk (callers pass
        // indices from a freelist of this class, or checked ones), so `base`
        // is non-null; the slot lies inside the chunk's slot area and its link
        // inside the link table after it, initialised before publication,
        // 4-byte aligned, and alive as long as `self`.
        unsafe {
            let link = &*base.add(self.slot_bytes()).cast::<AtomicU32>().add(slot);
            (
                link,
                NonNull::new_unchecked(base.add(slot * self.slot_size)),
            )
        }
    }

    /// Address of slot `index` (a published slot).
    #[inline]
    fn slot_ptr(&self, index: u32) -> NonNull<u8> {
        let base = self.chunk((index >> self.shift) as usize);
        let off = (index as usize & (self.slots_per_chunk() - 1)) * self.slot_size;
        // SAFETY: `index` names a slot of a published chunk (callers pass
        // indices from a freelist of this class or validated ones), so `base`
        // is non-null and `base + off` lies inside that chunk's allocation.
        unsafe { NonNull::new_unchecked(base.add(off)) }
    }

    /// Allocates a slot from shard `shard`: its address and index.
    #[inline]
    pub fn alloc(&self, shard: usize) -> Result<(NonNull<u8>, u32)> {
        let s = &self.shards[shard];
        let mut retries = 0;
        let index = match s.list.pop(self, &mut retries) {
            Some(i) => i,
            None => self.alloc_slow(shard, &mut retries)?,
        };
        if retries > 0 {
            s.retries.fetch_add(retries, Ordering::Relaxed);
        }
        s.allocs.fetch_add(1, Ordering::Relaxed);
        Ok((self.slot_ptr(index), index))
    }

    fn alloc_slow(&self, shard: usize, retries: &mut u64) -> Result<u32> {
        self.slow_path.fetch_add(1, Ordering::Relaxed);
        for k in 1..SHARDS {
            if let Some(i) = self.shards[(shard + k) % SHARDS].list.pop(self, retries) {
                return Ok(i);
            }
        }
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have carved a chunk onto our shard meanwhile.
        if let Some(i) = self.shards[shard].list.pop(self, retries) {
            return Ok(i);
        }
        let first = self.carve()?;
        self.set_link(first, LIVE);
        // Slot `first` is ours; the rest go onto our shard as one chain.
        let last = first + self.slots_per_chunk() as u32 - 1;
        self.shards[shard]
            .list
            .push_chain(self, first + 1, last, retries);
        Ok(first)
    }

    /// Reserves a new chunk (the grow mutex must be held) and returns the
    /// index of its first slot; its slots are linked in order, the last to
    /// [`NIL`], and owned by the caller.
    fn carve(&self) -> Result<u32> {
        let n = self.nchunks.load(Ordering::Relaxed);
        if n == MAX_CHUNKS {
            return Err(Error::new(
                ErrorCode::OutOfMemory,
                format!("size class {} B: chunk table full", self.slot_size),
            ));
        }
        let layout = self.chunk_layout();
        // SAFETY: the layout has non-zero size.
        let base = unsafe { alloc::alloc(layout) };
        if base.is_null() {
            return Err(Error::new(
                ErrorCode::OutOfMemory,
                format!("could not reserve a chunk of {} bytes", layout.size()),
            ));
        }
        let spc = self.slots_per_chunk();
        let first = (n as u32) << self.shift;
        // SAFETY: the link table occupies the last 4 * spc bytes of the fresh
        // allocation, which is 4-byte aligned (slot bytes are a multiple of 64,
        // the chunk 4096-aligned); nobody else can see the chunk yet, and every
        // link is written (initialised) here, before the chunk is published.
        unsafe {
            let p = base.add(self.slot_bytes()).cast::<AtomicU32>();
            for s in 0..spc {
                let next = if s + 1 < spc {
                    first + s as u32 + 1
                } else {
                    NIL
                };
                p.add(s).write(AtomicU32::new(next));
            }
        }
        self.chunks[n].store(base, Ordering::Release);
        self.nchunks.store(n + 1, Ordering::Release);
        Ok(first)
    }

    /// For a thread cache: takes a whole chain of free slots (the shard's
    /// list, else another shard's, else a fresh chunk). Returns its first
    /// index; the chain is linked through the link table and ends in [`NIL`].
    pub fn take_chain(&self, shard: usize) -> Result<u32> {
        let mut retries = 0;
        let r = self.take_chain_inner(shard, &mut retries);
        if retries > 0 {
            self.shards[shard]
                .retries
                .fetch_add(retries, Ordering::Relaxed);
        }
        r
    }

    fn take_chain_inner(&self, shard: usize, retries: &mut u64) -> Result<u32> {
        let top = self.shards[shard].list.take_all(retries);
        if top != NIL {
            return Ok(top);
        }
        self.slow_path.fetch_add(1, Ordering::Relaxed);
        for k in 1..SHARDS {
            let top = self.shards[(shard + k) % SHARDS].list.take_all(retries);
            if top != NIL {
                return Ok(top);
            }
        }
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let top = self.shards[shard].list.take_all(retries);
        if top != NIL {
            return Ok(top);
        }
        self.carve()
    }

    /// For a thread cache: puts a chain `first -> ... -> last` it owns onto
    /// shard `shard`.
    pub fn give_chain(&self, shard: usize, first: u32, last: u32) {
        let mut retries = 0;
        self.shards[shard]
            .list
            .push_chain(self, first, last, &mut retries);
        if retries > 0 {
            self.shards[shard]
                .retries
                .fetch_add(retries, Ordering::Relaxed);
        }
    }

    /// The link word of slot `index` (its successor while on a list).
    #[inline]
    pub fn next_of(&self, index: u32) -> u32 {
        self.link(index).load(Ordering::Relaxed)
    }

    /// Sets the link word of slot `index`, which the caller owns.
    #[inline]
    pub fn set_link(&self, index: u32, value: u32) {
        self.link(index).store(value, Ordering::Relaxed);
    }

    /// Adds counts kept elsewhere (a retiring thread cache) to shard 0.
    pub fn add_counts(&self, allocs: u64, frees: u64) {
        self.shards[0].allocs.fetch_add(allocs, Ordering::Relaxed);
        self.shards[0].frees.fetch_add(frees, Ordering::Relaxed);
    }

    /// Checks that (`ptr`, `index`) names a slot of this class; returns the
    /// slot's link word.
    #[inline]
    pub fn check(&self, ptr: NonNull<u8>, index: u32) -> Result<&AtomicU32> {
        let c = (index >> self.shift) as usize;
        if c < self.nchunks.load(Ordering::Acquire) {
            let (link, p) = self.slot(index);
            if p == ptr {
                return Ok(link);
            }
        }
        Err(not_a_slot(ptr, self.slot_size))
    }

    /// Checks that (`ptr`, `index`) is a live slot of this class and frees it
    /// to shard `shard`.
    pub fn free(&self, ptr: NonNull<u8>, index: u32, shard: usize) -> Result<()> {
        self.check(ptr, index)?;
        if !Freelist::mark_free(self, index) {
            return Err(Error::invalid(format!(
                "double free of {ptr:p} ({} B class)",
                self.slot_size
            )));
        }
        let s = &self.shards[shard];
        let mut retries = 0;
        s.list.push(self, index, &mut retries);
        if retries > 0 {
            s.retries.fetch_add(retries, Ordering::Relaxed);
        }
        s.frees.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The index of the slot starting at `ptr`, if `ptr` is the start of a
    /// slot of this class (live or not). Scans the chunk table: O(chunks).
    pub fn index_of(&self, ptr: *const u8) -> Option<u32> {
        let addr = ptr as usize;
        let n = self.nchunks.load(Ordering::Acquire);
        (0..n).find_map(|c| {
            let base = self.chunk(c) as usize;
            let off = addr.checked_sub(base)?;
            (off < self.slot_bytes() && off % self.slot_size == 0)
                .then(|| ((c << self.shift) | (off / self.slot_size)) as u32)
        })
    }

    /// Test helper: pops a free slot from any shard (no slow path, no count).
    #[cfg(test)]
    pub fn shards_pop_for_test(&self, retries: &mut u64) -> Option<u32> {
        self.shards.iter().find_map(|s| s.list.pop(self, retries))
    }

    /// Slots a thread cache may hold in its free list of this class.
    #[inline]
    pub fn flush_limit(&self) -> u32 {
        self.flush_limit
    }

    /// Slot size in bytes.
    #[inline]
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// A snapshot of the counters (see [`stats`](super::stats)).
    /// `extra` = (allocations, frees) counted by thread caches.
    pub fn stats(&self, extra: (u64, u64)) -> ClassStats {
        let (mut allocs, mut frees, mut retries) = (extra.0, extra.1, 0);
        for s in self.shards.iter() {
            frees += s.frees.load(Ordering::Relaxed);
        }
        for s in self.shards.iter() {
            allocs += s.allocs.load(Ordering::Relaxed);
            retries += s.retries.load(Ordering::Relaxed);
        }
        let live: u64 = allocs.saturating_sub(frees);
        ClassStats {
            slot_size: self.slot_size,
            live_pages: live,
            live_bytes: live * self.slot_size as u64,
            reserved_bytes: (self.nchunks.load(Ordering::Relaxed) * self.slot_bytes()) as u64,
            allocations: allocs,
            frees,
            cas_retries: retries,
            slow_path: self.slow_path.load(Ordering::Relaxed),
            lock_contended: 0,
        }
    }
}

/// The error of a free that names no slot of the class (kept out of line so
/// the fast paths stay small).
#[cold]
#[inline(never)]
fn not_a_slot(ptr: NonNull<u8>, slot_size: usize) -> Error {
    Error::invalid(format!(
        "free of {ptr:p}: not a slot of the {slot_size} B class of this allocator"
    ))
}

impl Links for SlabClass {
    #[inline]
    fn link(&self, index: u32) -> &AtomicU32 {
        let base = self.chunk((index >> self.shift) as usize);
        let slot = index as usize & (self.slots_per_chunk() - 1);
        // SAFETY: indices handed to `link` name slots of published chunks
        // (see `Links`), whose link tables were initialised before
        // publication and live as long as `self`; the table is 4-byte aligned.
        unsafe { &*base.add(self.slot_bytes()).cast::<AtomicU32>().add(slot) }
    }
}

impl Drop for SlabClass {
    fn drop(&mut self) {
        let layout = self.chunk_layout();
        for c in 0..*self.nchunks.get_mut() {
            let base = *self.chunks[c].get_mut();
            // SAFETY: every published chunk was allocated with this layout and
            // is freed once, here, when the class goes away.
            unsafe { alloc::dealloc(base, layout) };
        }
    }
}

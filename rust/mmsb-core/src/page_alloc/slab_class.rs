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

use super::freelist::{Freelist, Links, NIL};
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
        }
    }

    fn slots_per_chunk(&self) -> usize {
        1 << self.shift
    }

    fn slot_bytes(&self) -> usize {
        self.slot_size << self.shift
    }

    fn chunk_layout(&self) -> Layout {
        let bytes = self.slot_bytes() + 4 * self.slots_per_chunk();
        // Cannot fail: at most ~1 MiB + 64 KiB, a power-of-two alignment.
        Layout::from_size_align(bytes, CHUNK_ALIGN).unwrap_or(Layout::new::<u8>())
    }

    /// Base of chunk `c`, which must be below `nchunks`.
    fn chunk(&self, c: usize) -> *mut u8 {
        self.chunks[c].load(Ordering::Acquire)
    }

    /// Address of slot `index` (a published slot).
    fn slot_ptr(&self, index: u32) -> NonNull<u8> {
        let base = self.chunk((index >> self.shift) as usize);
        let off = (index as usize & (self.slots_per_chunk() - 1)) * self.slot_size;
        // SAFETY: `index` names a slot of a published chunk (callers pass
        // indices from a freelist of this class or validated ones), so `base`
        // is non-null and `base + off` lies inside that chunk's allocation.
        unsafe { NonNull::new_unchecked(base.add(off)) }
    }

    /// Allocates a slot from shard `shard`: its address and index.
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
        let spc = self.slots_per_chunk() as u32;
        let first = (n as u32) << self.shift;
        {
            // SAFETY: the link table occupies the last 4 * spc bytes of the
            // fresh allocation, which is 4-byte aligned (slot bytes are a
            // multiple of 64, the chunk 4096-aligned); nobody else can see the
            // chunk yet. We initialise every link before publishing.
            let links = unsafe {
                let p = base.add(self.slot_bytes()).cast::<AtomicU32>();
                for s in 0..spc as usize {
                    p.add(s).write(AtomicU32::new(NIL));
                }
                std::slice::from_raw_parts(p, spc as usize)
            };
            for (s, link) in links.iter().enumerate().take(spc as usize - 1) {
                link.store(first + s as u32 + 1, Ordering::Relaxed);
            }
            links[0].store(super::freelist::LIVE, Ordering::Relaxed);
        }
        self.chunks[n].store(base, Ordering::Release);
        self.nchunks.store(n + 1, Ordering::Release);
        // Slot `first` is ours; the rest go onto our shard as one chain.
        self.shards[shard]
            .list
            .push_chain(self, first + 1, first + spc - 1, retries);
        Ok(first)
    }

    /// Checks that (`ptr`, `index`) is a live slot of this class and frees it
    /// to shard `shard`.
    pub fn free(&self, ptr: NonNull<u8>, index: u32, shard: usize) -> Result<()> {
        let c = (index >> self.shift) as usize;
        if c >= self.nchunks.load(Ordering::Acquire) || self.slot_ptr(index) != ptr {
            return Err(Error::invalid(format!(
                "free of {ptr:p}: not a slot of the {} B class of this allocator",
                self.slot_size
            )));
        }
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

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// A snapshot of the counters (see [`stats`](super::stats)).
    pub fn stats(&self) -> ClassStats {
        let (mut frees, mut allocs, mut retries) = (0, 0, 0);
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

impl Links for SlabClass {
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

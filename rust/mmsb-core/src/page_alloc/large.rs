//! The mutex path for large pages (above 64 KiB).
//!
//! Large pages are rare and expensive to fill, so their allocation needs no
//! lock-free trickery: one mutex guards the set of live large blocks and the
//! counters, and the memory comes from the system allocator at 64-byte
//! alignment (zeroed pages through `alloc_zeroed`, which the system satisfies
//! with fresh, already-zero mappings for big sizes). Keeping the set of live
//! blocks makes frees checkable: a pointer that is not a live large block of
//! this allocator (a double free, or a foreign pointer) is an error, not
//! undefined behaviour.

use super::stats::ClassStats;
use crate::error::{Error, ErrorCode, Result};
use crate::page_buf::PAGE_ALIGN;
use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, TryLockError};

#[derive(Default)]
struct State {
    /// Live blocks: address -> length.
    live: HashMap<usize, usize>,
    stats: ClassStats,
}

/// The large-page allocator.
#[derive(Default)]
pub(crate) struct LargeAlloc {
    state: Mutex<State>,
}

impl LargeAlloc {
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut g = match self.state.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::WouldBlock) => self.state.lock(),
            Err(TryLockError::Poisoned(p)) => Err(p),
        }
        // A panic while holding the lock leaves the map and counters
        // consistent (every update is a single insert/remove plus counters).
        .unwrap_or_else(|p| p.into_inner());
        g.stats.lock_contended += 1;
        g
    }

    /// A 64-byte aligned block of `len` (> 0) bytes, zeroed if asked.
    pub fn alloc(&self, len: usize, zeroed: bool) -> Result<NonNull<u8>> {
        let layout = Layout::from_size_align(len, PAGE_ALIGN)
            .map_err(|_| Error::invalid(format!("page size {len} is too large")))?;
        // SAFETY: layout has non-zero size (callers pass len > 0).
        let raw = unsafe {
            if zeroed {
                alloc::alloc_zeroed(layout)
            } else {
                alloc::alloc(layout)
            }
        };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("could not allocate a page of {len} bytes"),
            )
        })?;
        let mut g = self.lock();
        // Exposed, so that Drop can rebuild the pointer from the address.
        g.live.insert(ptr.as_ptr().expose_provenance(), len);
        let s = &mut g.stats;
        s.allocations += 1;
        s.slow_path += 1;
        s.live_pages += 1;
        s.live_bytes += len as u64;
        s.reserved_bytes += len as u64;
        Ok(ptr)
    }

    /// Frees a block from [`LargeAlloc::alloc`]; an error if `ptr` is not a
    /// live large block of `len` bytes from this allocator.
    pub fn free(&self, ptr: NonNull<u8>, len: usize) -> Result<()> {
        {
            let mut g = self.lock();
            match g.live.get(&(ptr.as_ptr() as usize)) {
                Some(&l) if l == len => {}
                Some(&l) => {
                    return Err(Error::invalid(format!(
                        "free of a large page of {l} bytes with length {len}"
                    )))
                }
                None => {
                    return Err(Error::invalid(format!(
                        "free of {ptr:p}: not a live large page of this allocator (double free?)"
                    )))
                }
            }
            g.live.remove(&(ptr.as_ptr() as usize));
            let s = &mut g.stats;
            s.frees += 1;
            s.slow_path += 1;
            s.live_pages -= 1;
            s.live_bytes -= len as u64;
            s.reserved_bytes -= len as u64;
        }
        // SAFETY: ptr was allocated by `alloc` with this layout (checked in
        // the live map, now removed, so it is freed exactly once).
        unsafe {
            alloc::dealloc(
                ptr.as_ptr(),
                Layout::from_size_align_unchecked(len, PAGE_ALIGN),
            )
        };
        Ok(())
    }

    /// The length of the live large block at `ptr`, if there is one.
    pub fn len_of(&self, ptr: *const u8) -> Option<usize> {
        self.lock().live.get(&(ptr as usize)).copied()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClassStats {
        self.lock().stats
    }
}

impl Drop for LargeAlloc {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for (&addr, &len) in &state.live {
            // SAFETY: every entry is a block allocated with this layout and
            // not yet freed; the allocator is going away, so nobody else can
            // free it (blocks borrow nothing, but the allocator's owner is
            // responsible for outliving its blocks, see PageAllocator).
            unsafe {
                alloc::dealloc(
                    std::ptr::with_exposed_provenance_mut::<u8>(addr),
                    Layout::from_size_align_unchecked(len, PAGE_ALIGN),
                )
            };
        }
    }
}

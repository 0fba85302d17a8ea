//! The bytes of a CPU page: a zero-initialised, 64-byte aligned buffer.
//!
//! Alignment matters twice: SIMD apply kernels touch whole cache lines, and
//! zero-copy numeric views (a Julia `Vector{Float64}` over the page, say) need
//! element alignment. A [`PageBuf`] is allocated once at the page's size and
//! never grows. Its memory comes from layer 0, the process-wide
//! [`PageAllocator`] (size-class slabs up to 64 KiB, the mutex path above), and
//! goes back to it when the buffer is dropped.

use crate::error::Result;
use crate::page_alloc::{Block, PageAllocator};
use std::ptr::NonNull;

/// Alignment of every page buffer, in bytes (one cache line, one AVX-512 vector).
pub const PAGE_ALIGN: usize = 64;

/// A fixed-size, 64-byte aligned, zero-initialised byte buffer.
pub struct PageBuf {
    /// The memory; `None` for a zero-length buffer.
    block: Option<Block>,
}

impl PageBuf {
    /// A zeroed buffer of `len` bytes. `len` may be zero.
    pub fn zeroed(len: usize) -> Result<PageBuf> {
        if len == 0 {
            return Ok(PageBuf { block: None });
        }
        let block = PageAllocator::global().alloc_zeroed(len)?;
        Ok(PageBuf { block: Some(block) })
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<PageBuf> {
        if bytes.is_empty() {
            return Ok(PageBuf { block: None });
        }
        let block = PageAllocator::global().alloc_uninit(bytes.len())?;
        // SAFETY: the block owns bytes.len() writable bytes that nothing else
        // references, and `bytes` (borrowed) cannot overlap fresh memory; after
        // the copy every byte is initialised.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), block.ptr().as_ptr(), bytes.len()) };
        Ok(PageBuf { block: Some(block) })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.block.as_ref().map_or(0, Block::len)
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.block.is_none()
    }

    fn raw(&self) -> (NonNull<u8>, usize) {
        match &self.block {
            Some(b) => (b.ptr(), b.len()),
            None => (NonNull::<u64>::dangling().cast(), 0),
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let (ptr, len) = self.raw();
        // SAFETY: ptr is valid for len initialised bytes (zeroed or copied at
        // allocation) owned by this buffer, or dangling-but-aligned with len 0,
        // which from_raw_parts allows.
        unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (ptr, len) = self.raw();
        // SAFETY: as in as_slice, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) }
    }

    /// Pointer to the first byte (64-byte aligned when the buffer is non-empty).
    pub fn as_ptr(&self) -> *const u8 {
        self.raw().0.as_ptr()
    }
}

impl Clone for PageBuf {
    fn clone(&self) -> PageBuf {
        match PageBuf::from_slice(self.as_slice()) {
            Ok(b) => b,
            Err(_) => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(self.len(), PAGE_ALIGN)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            ),
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            // Cannot fail: the block is a live allocation of the global
            // allocator, owned by this buffer alone. Were it to fail, leaking
            // the memory is the safe outcome.
            let _ = PageAllocator::global().free(block);
        }
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuf({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_and_aligned() {
        for len in [1usize, 7, 64, 4096, 100_000] {
            let b = PageBuf::zeroed(len).unwrap();
            assert_eq!(b.as_ptr() as usize % PAGE_ALIGN, 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn clone_copies_bytes_and_writes_do_not_alias() {
        let mut a = PageBuf::from_slice(b"hello world").unwrap();
        let b = a.clone();
        a.as_mut_slice()[0] = b'j';
        assert_eq!(b.as_slice(), b"hello world");
        assert_eq!(a.as_slice(), b"jello world");
    }

    #[test]
    fn buffers_come_from_the_global_allocator_and_go_back_to_it() {
        // Other tests allocate concurrently, so count only this thread's
        // effect through a size nobody else uses.
        let len = 4032; // the 4096 B class; no other test here uses it
        let class = crate::page_alloc::size_class::class_of(len).unwrap();
        let before = PageAllocator::global().stats().classes[class];
        let bufs: Vec<PageBuf> = (0..10).map(|_| PageBuf::zeroed(len).unwrap()).collect();
        let mid = PageAllocator::global().stats().classes[class];
        assert!(mid.allocations >= before.allocations + 10);
        drop(bufs);
        let after = PageAllocator::global().stats().classes[class];
        assert!(after.frees >= before.frees + 10);
    }

    #[test]
    fn from_slice_copies_every_byte_at_every_size() {
        for len in [1usize, 63, 64, 65, 513, 1024, 65_536, 65_537, 200_000] {
            let src: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let b = PageBuf::from_slice(&src).unwrap();
            assert_eq!(b.as_slice(), &src[..]);
            assert_eq!(b.as_ptr() as usize % PAGE_ALIGN, 0);
        }
    }

    #[test]
    fn empty_buffer_is_valid() {
        let b = PageBuf::zeroed(0).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.as_slice(), &[] as &[u8]);
        let c = b.clone();
        assert!(c.is_empty());
    }
}

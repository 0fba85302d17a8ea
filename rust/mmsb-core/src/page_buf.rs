//! The bytes of a CPU page: a zero-initialised, 64-byte aligned buffer.
//!
//! Alignment matters twice: SIMD apply kernels touch whole cache lines, and
//! zero-copy numeric views (a Julia `Vector{Float64}` over the page, say) need
//! element alignment. A [`PageBuf`] is allocated once at the page's size and
//! never grows. Layer 0 (the size-class allocator) will become its source of
//! memory; today it comes from the global allocator.

use crate::error::{Error, ErrorCode, Result};
use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every page buffer, in bytes (one cache line, one AVX-512 vector).
pub const PAGE_ALIGN: usize = 64;

/// A fixed-size, 64-byte aligned, zero-initialised byte buffer.
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PageBuf owns its allocation exclusively (like Vec<u8>); there is no
// interior mutability, so moving it across threads or sharing `&PageBuf` is sound.
unsafe impl Send for PageBuf {}
// SAFETY: see above; `&PageBuf` only gives out `&[u8]`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A zeroed buffer of `len` bytes. `len` may be zero.
    pub fn zeroed(len: usize) -> Result<PageBuf> {
        if len == 0 {
            return Ok(PageBuf {
                ptr: NonNull::<u64>::dangling().cast(),
                len: 0,
            });
        }
        let layout = Layout::from_size_align(len, PAGE_ALIGN)
            .map_err(|_| Error::invalid(format!("page size {len} is too large")))?;
        // SAFETY: layout has non-zero size (len > 0 checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            Error::new(
                ErrorCode::OutOfMemory,
                format!("could not allocate a page of {len} bytes"),
            )
        })?;
        Ok(PageBuf { ptr, len })
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<PageBuf> {
        let mut b = PageBuf::zeroed(bytes.len())?;
        b.as_mut_slice().copy_from_slice(bytes);
        Ok(b)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised bytes (zeroed at allocation),
        // or dangling-but-aligned with len 0, which from_raw_parts allows.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Pointer to the first byte (64-byte aligned when the buffer is non-empty).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Clone for PageBuf {
    fn clone(&self) -> PageBuf {
        match PageBuf::from_slice(self.as_slice()) {
            Ok(b) => b,
            Err(_) => alloc::handle_alloc_error(
                Layout::from_size_align(self.len, PAGE_ALIGN).unwrap_or(Layout::new::<u8>()),
            ),
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: the same layout was accepted at allocation (len > 0), and ptr came
        // from alloc_zeroed with it; the buffer is dropped once.
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, PAGE_ALIGN),
            )
        }
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuf({} bytes)", self.len)
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
    fn empty_buffer_is_valid() {
        let b = PageBuf::zeroed(0).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.as_slice(), &[] as &[u8]);
        let c = b.clone();
        assert!(c.is_empty());
    }
}

//! Deltas: construct, annotate, inspect, encode/decode, merge, free.
//!
//! A delta handle owns a copy of the payload and mask given at construction,
//! so the caller's buffers may be reused as soon as the constructor returns.
//! Deltas are not tied to a store; apply one with `mmsb_store_apply_delta`.

use crate::ffi_util::{c_str, call, copy_out, need_out, out, slice};
use crate::handle::{self, lock, Object, TAG_DELTA};
use crate::page_api::MmsbPageId;
use mmsb_core::{delta_codec, delta_merge, Delta, Error, PageId};
use std::ffi::c_char;
use std::sync::{Arc, Mutex};

/// A delta handle (0 is null).
pub type MmsbDelta = u64;

/// What `mmsb_delta_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbDeltaInfo {
    /// The page written.
    pub page: u64,
    /// First byte of the range.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// Whether the delta has a mask.
    pub has_mask: bool,
    /// Whether the payload is sparse.
    pub sparse: bool,
    /// Whether the delta is conditional on an epoch.
    pub has_expected_epoch: bool,
    /// The expected epoch (0 when absent).
    pub expected_epoch: u64,
    /// Bytes in the payload.
    pub payload_len: u64,
    /// Bytes the delta writes (set mask bits, or the range length).
    pub written_bytes: u64,
    /// Creation time, ns since the Unix epoch.
    pub timestamp_ns: u64,
}

fn register(d: Delta, out_delta: *mut MmsbDelta) -> mmsb_core::Result<()> {
    d.validate_shape()?;
    let h = handle::insert(Object::Delta(Arc::new(Mutex::new(d))));
    // SAFETY: callers check out_delta non-null with need_out before building `d`;
    // the C caller guarantees it is valid for one write.
    unsafe { out(out_delta, h, "out_delta") }
}

/// Builds a delta that writes `payload` (`len` bytes) at `offset` of `page`,
/// where `mask` (`mask_words` u64 words, one bit per byte) is set; a null mask
/// with `mask_words` 0 writes every byte. Writes the new handle into `*out_delta`.
/// Shape errors (a mask of the wrong size, stray mask bits, an empty range) are
/// `MMSB_ERR_INVALID_ARGUMENT`; whether the range fits the page is checked when applied.
///
/// # Safety
/// `payload` is null (only with `len` 0) or valid for `len` bytes; `mask` is
/// null (only with `mask_words` 0) or valid for `mask_words` u64; `out_delta`
/// is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_new_dense(
    page: MmsbPageId,
    offset: u64,
    payload: *const u8,
    len: u64,
    mask: *const u64,
    mask_words: u64,
    out_delta: *mut MmsbDelta,
) -> i32 {
    call(|| {
        need_out(out_delta, "out_delta")?;
        // SAFETY: caller contract above.
        let (p, m) = unsafe {
            (
                slice(payload, len, "payload")?,
                slice(mask, mask_words, "mask")?,
            )
        };
        let d = if mask.is_null() {
            Delta::dense(PageId(page), offset, p.to_vec())
        } else {
            Delta::masked(PageId(page), offset, p.to_vec(), m.to_vec())
        };
        register(d, out_delta)
    })
}

/// Builds a sparse delta over the `len`-byte range at `offset`: the k-th set
/// bit of `mask` (`mask_words` words, required) receives `values[k]`
/// (`values_len` must equal the number of set bits).
///
/// # Safety
/// `mask` is valid for `mask_words` u64; `values` is null (only with
/// `values_len` 0) or valid for `values_len` bytes; `out_delta` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_new_sparse(
    page: MmsbPageId,
    offset: u64,
    len: u64,
    mask: *const u64,
    mask_words: u64,
    values: *const u8,
    values_len: u64,
    out_delta: *mut MmsbDelta,
) -> i32 {
    call(|| {
        need_out(out_delta, "out_delta")?;
        if mask.is_null() {
            return Err(Error::invalid("a sparse delta needs a mask (mask is null)"));
        }
        // SAFETY: caller contract above.
        let (m, v) = unsafe {
            (
                slice(mask, mask_words, "mask")?,
                slice(values, values_len, "values")?,
            )
        };
        register(
            Delta::sparse(PageId(page), offset, len, m.to_vec(), v.to_vec()),
            out_delta,
        )
    })
}

/// Frees a delta; its handle becomes stale.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_free(delta: MmsbDelta) -> i32 {
    call(|| handle::remove(delta, TAG_DELTA).map(|_| ()))
}

/// Sets the delta's source label (NUL-terminated UTF-8, at most 4096 bytes).
///
/// # Safety
/// `source` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_set_source(delta: MmsbDelta, source: *const c_char) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let s = unsafe { c_str(source, "source")? };
        if s.len() > mmsb_core::delta::MAX_SOURCE_LEN {
            return Err(Error::invalid("source label is longer than 4096 bytes"));
        }
        let d = handle::delta(delta)?;
        lock(&d)?.source = s.to_owned();
        Ok(())
    })
}

/// Sets the delta's intent metadata; `json` must be a JSON document.
///
/// # Safety
/// `json` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_set_intent(delta: MmsbDelta, json: *const c_char) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let j = unsafe { c_str(json, "json")? };
        let d = handle::delta(delta)?;
        let mut g = lock(&d)?;
        let updated = g.clone().with_intent(j)?;
        *g = updated;
        Ok(())
    })
}

/// Makes the delta conditional: it applies only while its page is at `epoch`.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_set_expected_epoch(delta: MmsbDelta, epoch: u64) -> i32 {
    call(|| {
        let d = handle::delta(delta)?;
        lock(&d)?.expected_epoch = Some(epoch);
        Ok(())
    })
}

/// Writes the delta's shape and metadata into `*out_info`.
///
/// # Safety
/// `out_info` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_info(delta: MmsbDelta, out_info: *mut MmsbDeltaInfo) -> i32 {
    call(|| {
        need_out(out_info, "out_info")?;
        let d = handle::delta(delta)?;
        let g = lock(&d)?;
        let info = MmsbDeltaInfo {
            page: g.page.0,
            offset: g.offset,
            len: g.len,
            has_mask: g.mask.is_some(),
            sparse: g.payload.is_sparse(),
            has_expected_epoch: g.expected_epoch.is_some(),
            expected_epoch: g.expected_epoch.unwrap_or(0),
            payload_len: g.payload.bytes().len() as u64,
            written_bytes: g.written_bytes(),
            timestamp_ns: g.timestamp_ns,
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_info, info, "out_info") }
    })
}

/// Encodes the delta (the versioned log encoding) into `buf` (capacity `cap`);
/// writes the encoded length into `*out_len`. Buffer rules as in
/// `mmsb_page_get_metadata`: null `buf` with `cap` 0 queries the length.
///
/// # Safety
/// `buf` is null or valid for `cap` bytes; `out_len` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_encode(
    delta: MmsbDelta,
    buf: *mut u8,
    cap: u64,
    out_len: *mut u64,
) -> i32 {
    call(|| {
        let d = handle::delta(delta)?;
        let g = lock(&d)?;
        let bytes = delta_codec::encode(&g)?;
        drop(g);
        // SAFETY: caller contract above.
        unsafe { copy_out(&bytes, buf, cap, out_len) }
    })
}

/// Decodes one delta from the front of `buf` (`len` bytes); writes the new
/// handle into `*out_delta` and the bytes consumed into `*out_consumed` (may be
/// null). Malformed input is `MMSB_ERR_CORRUPTION` naming the offset.
///
/// # Safety
/// `buf` is null (only with `len` 0) or valid for `len` bytes; `out_delta` is
/// null or valid for one write; `out_consumed` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_decode(
    buf: *const u8,
    len: u64,
    out_delta: *mut MmsbDelta,
    out_consumed: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_delta, "out_delta")?;
        // SAFETY: caller contract above.
        let bytes = unsafe { slice(buf, len, "buf")? };
        let (d, used) = delta_codec::decode(bytes)?;
        if !out_consumed.is_null() {
            // SAFETY: non-null; caller contract above.
            unsafe { out(out_consumed, used as u64, "out_consumed")? };
        }
        register(d, out_delta)
    })
}

/// Merges two deltas of one page into a new delta equivalent to applying `a`
/// then `b`; writes its handle into `*out_delta`. `a` and `b` stay valid.
///
/// # Safety
/// `out_delta` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_merge(
    a: MmsbDelta,
    b: MmsbDelta,
    out_delta: *mut MmsbDelta,
) -> i32 {
    call(|| {
        need_out(out_delta, "out_delta")?;
        let (ha, hb) = (handle::delta(a)?, handle::delta(b)?);
        let da = lock(&ha)?.clone();
        let db = lock(&hb)?.clone();
        register(delta_merge::merge(&da, &db)?, out_delta)
    })
}

//! Pages: create, delete, inspect, read (copying), borrow (zero-copy), metadata, views.
//!
//! Borrowing rules (also in `docs/api.md`): `mmsb_page_borrow` pins the page's
//! bytes *as they are at that moment* and returns a pointer to them. The memory
//! stays valid and unchanged until `mmsb_borrow_release`, even if the page is
//! written (writers copy first), deleted, or its store closed. Copy instead of
//! borrowing when you keep bytes past the next write you care about.

use crate::durable_api::commit_one;
use crate::ffi_util::{c_str, call, copy_ids, copy_out, need_out, out, slice, slice_mut};
use crate::handle::{self, lock, Object, Writer, TAG_BORROW};
use crate::store_api::MmsbStore;
use mmsb_core::{DType, Error, NumericView, Op, PageId, PageLocation, Result};
use std::ffi::c_char;
use std::sync::Arc;

/// The numeric view a C caller names by `dtype` (an `MMSB_DTYPE_*` code, 0 =
/// no view) and element count `len`: the one decoding of the pair, shared by
/// `mmsb_page_set_view` and `mmsb_commit_set_view`.
pub(crate) fn view_from_c(dtype: u8, len: u64) -> Result<Option<NumericView>> {
    if dtype == 0 {
        return Ok(None);
    }
    Ok(Some(NumericView {
        dtype: DType::from_u8(dtype)?,
        len,
    }))
}

/// A page id (0 is never a page).
pub type MmsbPageId = u64;
/// A borrow handle (0 is null).
pub type MmsbBorrow = u64;

/// What `mmsb_page_info` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbPageInfo {
    /// Size in bytes.
    pub size: u64,
    /// Commits that changed the page.
    pub epoch: u64,
    /// `MMSB_LOCATION_*`.
    pub location: u8,
    /// `MMSB_DTYPE_*` of the numeric view (`MMSB_DTYPE_NONE` if none).
    pub dtype: u8,
    /// Elements in the numeric view (0 if none).
    pub view_len: u64,
}

/// Creates a zeroed page of `size` bytes at `location` (`MMSB_LOCATION_*`) and
/// writes its id into `*out_page`. Only CPU pages are backed in this build; GPU
/// and unified pages fail with `MMSB_ERR_UNSUPPORTED`.
///
/// # Safety
/// `out_page` is null or valid for writing one u64.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_create(
    store: MmsbStore,
    size: u64,
    location: u8,
    out_page: *mut MmsbPageId,
) -> i32 {
    call(|| {
        need_out(out_page, "out_page")?;
        let loc = PageLocation::from_u8(location)?;
        let id = match handle::writer(store)? {
            Writer::Memory(s) => lock(&s)?.create_page(size, loc)?,
            Writer::Durable(s) => {
                let r = commit_one(
                    &s,
                    Op::CreatePage {
                        size,
                        location: loc,
                    },
                )?;
                *r.created
                    .first()
                    .ok_or_else(|| Error::new(mmsb_core::ErrorCode::Internal, "no page created"))?
            }
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_page, id.0, "out_page") }
    })
}

/// Deletes a page. Outstanding borrows of it stay readable until released.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_delete(store: MmsbStore, page: MmsbPageId) -> i32 {
    call(|| match handle::writer(store)? {
        Writer::Memory(s) => {
            let r = lock(&s)?.delete_page(PageId(page));
            r
        }
        Writer::Durable(s) => commit_one(&s, Op::DeletePage(PageId(page))).map(|_| ()),
    })
}

/// Writes a page's size, epoch, location and numeric view into `*out_info`.
///
/// # Safety
/// `out_info` is null or valid for writing one `MmsbPageInfo`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_info(
    store: MmsbStore,
    page: MmsbPageId,
    out_info: *mut MmsbPageInfo,
) -> i32 {
    call(|| {
        need_out(out_info, "out_info")?;
        let info = handle::reader(store)?.with(|g| {
            let p = g.page(PageId(page))?;
            let v = p.view();
            Ok(MmsbPageInfo {
                size: p.size(),
                epoch: p.epoch(),
                location: p.location() as u8,
                dtype: v.map_or(0, |v| v.dtype as u8),
                view_len: v.map_or(0, |v| v.len),
            })
        })?;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_info, info, "out_info") }
    })
}

/// Copies `len` bytes of the page starting at `offset` into `buf`.
///
/// # Safety
/// `buf` is null (only with `len` 0) or valid for writing `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_read(
    store: MmsbStore,
    page: MmsbPageId,
    offset: u64,
    buf: *mut u8,
    len: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let dst = unsafe { slice_mut(buf, len, "buf")? };
        handle::reader(store)?.with(|g| g.read_into(PageId(page), offset, dst))
    })
}

/// Pins the page's current bytes and returns a pointer to them (`*out_ptr`,
/// `*out_len`, 64-byte aligned) and a borrow handle (`*out_borrow`). The bytes
/// stay valid and unchanged until `mmsb_borrow_release`. Never write through the pointer.
///
/// # Safety
/// Each out-pointer is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_borrow(
    store: MmsbStore,
    page: MmsbPageId,
    out_ptr: *mut *const u8,
    out_len: *mut u64,
    out_borrow: *mut MmsbBorrow,
) -> i32 {
    call(|| {
        need_out(out_ptr, "out_ptr")?;
        need_out(out_len, "out_len")?;
        need_out(out_borrow, "out_borrow")?;
        let snap = Arc::new(handle::reader(store)?.with(|g| g.snapshot(PageId(page)))?);
        let ptr = snap.bytes().as_ptr();
        let len = snap.bytes().len() as u64;
        let h = handle::insert(Object::Borrow(snap));
        // SAFETY: caller contract above; all checked non-null.
        unsafe {
            out(out_ptr, ptr, "out_ptr")?;
            out(out_len, len, "out_len")?;
            out(out_borrow, h, "out_borrow")
        }
    })
}

/// Ends a borrow; the pointer it gave must not be used afterwards.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_borrow_release(borrow: MmsbBorrow) -> i32 {
    call(|| handle::remove(borrow, TAG_BORROW).map(|_| ()))
}

/// Sets the page's numeric view to `len` elements of `dtype` (`MMSB_DTYPE_*`);
/// `MMSB_DTYPE_NONE` clears it. The view must fit the page.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_set_view(
    store: MmsbStore,
    page: MmsbPageId,
    dtype: u8,
    len: u64,
) -> i32 {
    call(|| {
        let view = view_from_c(dtype, len)?;
        match handle::writer(store)? {
            Writer::Memory(s) => {
                let r = lock(&s)?.set_view(PageId(page), view);
                r
            }
            Writer::Durable(s) => commit_one(
                &s,
                Op::SetView {
                    page: PageId(page),
                    view,
                },
            )
            .map(|_| ()),
        }
    })
}

/// Sets user metadata `key -> value` on a page (`key`: NUL-terminated UTF-8,
/// 1 to 256 bytes; `value`: `value_len` bytes, may be empty).
///
/// # Safety
/// `key` is null or NUL-terminated; `value` is null (only with `value_len` 0)
/// or valid for reading `value_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_set_metadata(
    store: MmsbStore,
    page: MmsbPageId,
    key: *const c_char,
    value: *const u8,
    value_len: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let (k, v) = unsafe { (c_str(key, "key")?, slice(value, value_len, "value")?) };
        match handle::writer(store)? {
            Writer::Memory(s) => {
                let r = lock(&s)?.set_metadata(PageId(page), k, v);
                r
            }
            Writer::Durable(s) => commit_one(
                &s,
                Op::SetMetadata {
                    page: PageId(page),
                    key: k.to_owned(),
                    value: v.to_vec(),
                },
            )
            .map(|_| ()),
        }
    })
}

/// Copies the metadata value under `key` into `buf` (capacity `cap`) and its
/// length into `*out_len`. With `buf` null and `cap` 0, only reports the
/// length. Too small a buffer fails with `MMSB_ERR_BUFFER_TOO_SMALL` after
/// writing the needed length. A missing key is `MMSB_ERR_NOT_FOUND`.
///
/// # Safety
/// `key` is null or NUL-terminated; `buf` is null or valid for `cap` bytes;
/// `out_len` is null or valid for one u64.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_get_metadata(
    store: MmsbStore,
    page: MmsbPageId,
    key: *const c_char,
    buf: *mut u8,
    cap: u64,
    out_len: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let k = unsafe { c_str(key, "key")? };
        let v = handle::reader(store)?.with(|g| {
            let p = g.page(PageId(page))?;
            p.metadata(k)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::not_found(format!("page#{page} has no metadata key {k:?}")))
        })?;
        // SAFETY: caller contract above.
        unsafe { copy_out(&v, buf, cap, out_len) }
    })
}

/// Removes the metadata under `key`; `MMSB_ERR_NOT_FOUND` if absent.
///
/// # Safety
/// `key` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_remove_metadata(
    store: MmsbStore,
    page: MmsbPageId,
    key: *const c_char,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let k = unsafe { c_str(key, "key")? };
        match handle::writer(store)? {
            Writer::Memory(s) => {
                let r = lock(&s)?.remove_metadata(PageId(page), k);
                r
            }
            Writer::Durable(s) => {
                // The commit op is a no-op for a missing key; report it as the in-memory store does.
                s.read_with(|g| {
                    g.page(PageId(page))?
                        .metadata(k)
                        .map(|_| ())
                        .ok_or_else(|| {
                            Error::not_found(format!("page#{page} has no metadata key {k:?}"))
                        })
                })?;
                commit_one(
                    &s,
                    Op::RemoveMetadata {
                        page: PageId(page),
                        key: k.to_owned(),
                    },
                )
                .map(|_| ())
            }
        }
    })
}

/// Copies the ids of all pages (ascending) into `buf` (capacity `cap` ids) and
/// their number into `*out_count`; the buffer-size rules of
/// `mmsb_page_get_metadata` apply, counted in ids.
///
/// # Safety
/// `buf` is null or valid for `cap` u64 writes; `out_count` is null or valid for one u64.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_list(
    store: MmsbStore,
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let ids = handle::reader(store)?.with(|g| Ok(g.page_ids()))?;
        // SAFETY: caller contract above.
        unsafe { copy_ids(&ids, buf, cap, out_count) }
    })
}

/// Writes the page id and the epoch at which a borrow pinned the page's bytes.
///
/// # Safety
/// `out_page` and `out_epoch` are null or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn mmsb_borrow_info(
    borrow: MmsbBorrow,
    out_page: *mut MmsbPageId,
    out_epoch: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_page, "out_page")?;
        need_out(out_epoch, "out_epoch")?;
        let snap = match handle::get(borrow, TAG_BORROW)? {
            Object::Borrow(s) => s,
            _ => {
                return Err(Error::new(
                    mmsb_core::ErrorCode::Internal,
                    "borrow tag on a non-borrow",
                ))
            }
        };
        // SAFETY: caller contract above; both checked non-null.
        unsafe {
            out(out_page, snap.id.0, "out_page")?;
            out(out_epoch, snap.epoch, "out_epoch")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_codes_decode_to_no_view_a_view_or_invalid_argument() {
        assert_eq!(view_from_c(0, 99).unwrap(), None);
        for dt in DType::ALL {
            assert_eq!(
                view_from_c(dt as u8, 3).unwrap(),
                Some(NumericView { dtype: dt, len: 3 })
            );
        }
        let e = view_from_c(255, 1).unwrap_err();
        assert_eq!(e.code, mmsb_core::ErrorCode::InvalidArgument);
    }
}

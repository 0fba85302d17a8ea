//! Semiring nodes and semiring edges on a durable store.
//!
//! A page of a durable store (`mmsb_store_open`) can be declared a semiring
//! node of a built-in semiring over a dtype (`MMSB_SEMIRING_*`,
//! `MMSB_DTYPE_*`, as in the semiring functions), with a length in elements
//! and an optional input page `b`. Semiring edges link two nodes of the same
//! semiring and dtype with a weight: a scalar, a diagonal, or a CSR matrix
//! (`nrows` = the child's length, `ncols` = the parent's). Weight values are
//! the dtype's little-endian elements, passed as bytes (no alignment needed).
//! Each declaration is a commit of its own, logged, and restored on reopen;
//! afterwards every commit that writes an input page updates the node pages
//! incrementally in the same commit (`x_v = b_v ⊕ ⊕_u W_uv ⊗ x_u`). Writing a
//! node page directly is `MMSB_ERR_INVALID_ARGUMENT`. See
//! docs/semiring-propagation.md ("Semiring nodes in durable commits").

use crate::ffi_util::{call, need_out, out, slice, slice_mut};
use crate::handle;
use crate::page_api::MmsbPageId;
use crate::store_api::MmsbStore;
use mmsb_core::semiring::SemiringKind;
use mmsb_core::semiring_nodes::{NodeDecl, SemiringWeight};
use mmsb_core::{CommitReceipt, DType, Error, ErrorCode, PageId, Result};
use std::ffi::c_void;

/// Writes a commit's LSN through an optional out-pointer.
/// # Safety
/// `out_lsn` is null or valid for writing one `u64`.
unsafe fn lsn_out(r: Result<CommitReceipt>, out_lsn: *mut u64) -> Result<()> {
    let r = r?;
    if out_lsn.is_null() {
        return Ok(());
    }
    // SAFETY: non-null; forwarded from this function's contract.
    unsafe { out(out_lsn, r.lsn, "out_lsn") }
}

/// Declares `page` a semiring node of `kind` over `dtype` with `len` elements
/// and the input page `input` (0 = none), in a commit of its own; the node
/// page is written with its value (`b`, or the semiring's zero). Writes the
/// LSN into `*out_lsn` (if not null). A page smaller than `len` elements, an
/// unknown page, or a page already declared is an error and changes nothing;
/// a pair without a built-in is `MMSB_ERR_UNSUPPORTED`.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_declare_node(
    store: MmsbStore,
    page: MmsbPageId,
    kind: u8,
    dtype: u8,
    len: u64,
    input: MmsbPageId,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        let s = handle::durable(store)?;
        let decl = NodeDecl {
            kind: SemiringKind::from_u8(kind)?,
            dtype: DType::from_u8(dtype)?,
            len,
            input: (input != 0).then_some(PageId(input)),
        };
        let r = s.declare_semiring_node(PageId(page), decl);
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Adds the edge `parent -> child` with `w`, or (`replace`) replaces the
/// weight of the existing edge.
fn add_edge(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    w: SemiringWeight,
    replace: bool,
) -> Result<CommitReceipt> {
    let s = handle::durable(store)?;
    if replace {
        s.set_semiring_edge_weight(PageId(parent), PageId(child), w)
    } else {
        s.add_semiring_edge(PageId(parent), PageId(child), w)
    }
}

/// A CSR weight from C arrays.
///
/// # Safety
/// As `mmsb_semiring_add_edge_csr`'s array arguments.
unsafe fn csr_weight(
    nrows: u64,
    ncols: u64,
    indptr: *const u64,
    indices: *const u32,
    nnz: u64,
    values: *const c_void,
    value_bytes: u64,
) -> Result<SemiringWeight> {
    let rows = nrows
        .checked_add(1)
        .ok_or_else(|| Error::invalid("nrows is impossibly large"))?;
    // SAFETY: caller contract above (each slice helper checks null and length).
    let (p, i, v) = unsafe {
        (
            slice(indptr, rows, "indptr")?,
            slice(indices, nnz, "indices")?,
            slice(values.cast::<u8>(), value_bytes, "values")?,
        )
    };
    Ok(SemiringWeight::Csr {
        nrows,
        ncols,
        indptr: p.to_vec(),
        indices: i.to_vec(),
        values: v.to_vec(),
    })
}

/// Adds the semiring edge `parent -> child` with a scalar weight (`value`:
/// `value_bytes` bytes, one element of the nodes' dtype), in a commit of its
/// own; the nodes it reaches are rewritten. A cycle is `MMSB_ERR_CYCLE`;
/// nodes of different semirings or dtypes, a wrong shape or a second edge
/// between the pair is `MMSB_ERR_INVALID_ARGUMENT`; nothing changes on error.
///
/// # Safety
/// `value` is valid for reading `value_bytes` bytes; `out_lsn` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_add_edge_scalar(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    value: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let v = unsafe { slice(value.cast::<u8>(), value_bytes, "value")? };
        let r = add_edge(
            store,
            parent,
            child,
            SemiringWeight::Scalar(v.to_vec()),
            false,
        );
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Adds the semiring edge `parent -> child` with a diagonal weight (`values`:
/// `value_bytes` bytes, one element per entry). Errors as
/// `mmsb_semiring_add_edge_scalar`.
///
/// # Safety
/// `values` is valid for reading `value_bytes` bytes; `out_lsn` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_add_edge_diagonal(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    values: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let v = unsafe { slice(values.cast::<u8>(), value_bytes, "values")? };
        let r = add_edge(
            store,
            parent,
            child,
            SemiringWeight::Diagonal(v.to_vec()),
            false,
        );
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Adds the semiring edge `parent -> child` with a CSR matrix weight:
/// `nrows` (the child's length) × `ncols` (the parent's), `indptr` of
/// `nrows + 1` offsets, `indices` of `nnz` columns (strictly increasing within
/// a row), `values` of `value_bytes` bytes (`nnz` elements). A malformed
/// matrix is `MMSB_ERR_INVALID_ARGUMENT`; other errors as
/// `mmsb_semiring_add_edge_scalar`.
///
/// # Safety
/// `indptr` is valid for `nrows + 1` reads, `indices` for `nnz`, `values` for
/// `value_bytes` bytes (null allowed for a zero count); `out_lsn` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_add_edge_csr(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    nrows: u64,
    ncols: u64,
    indptr: *const u64,
    indices: *const u32,
    nnz: u64,
    values: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let w = unsafe { csr_weight(nrows, ncols, indptr, indices, nnz, values, value_bytes)? };
        let r = add_edge(store, parent, child, w, false);
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Replaces the weight of the existing semiring edge `parent -> child` with a
/// scalar (`value`: `value_bytes` bytes, one element of the nodes' dtype), in
/// a commit of its own; the nodes it reaches are rewritten. No such edge is
/// `MMSB_ERR_NOT_FOUND`; a wrong shape is `MMSB_ERR_INVALID_ARGUMENT`;
/// nothing changes on error.
///
/// # Safety
/// `value` is valid for reading `value_bytes` bytes; `out_lsn` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_set_edge_scalar(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    value: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let v = unsafe { slice(value.cast::<u8>(), value_bytes, "value")? };
        let r = add_edge(
            store,
            parent,
            child,
            SemiringWeight::Scalar(v.to_vec()),
            true,
        );
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Replaces the weight of the existing semiring edge `parent -> child` with a
/// diagonal (`values`: `value_bytes` bytes, one element per entry). Errors as
/// `mmsb_semiring_set_edge_scalar`.
///
/// # Safety
/// `values` is valid for reading `value_bytes` bytes; `out_lsn` is null or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_set_edge_diagonal(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    values: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let v = unsafe { slice(values.cast::<u8>(), value_bytes, "values")? };
        let r = add_edge(
            store,
            parent,
            child,
            SemiringWeight::Diagonal(v.to_vec()),
            true,
        );
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Replaces the weight of the existing semiring edge `parent -> child` with a
/// CSR matrix (arguments as `mmsb_semiring_add_edge_csr`). Errors as
/// `mmsb_semiring_set_edge_scalar`; a malformed matrix is
/// `MMSB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// As `mmsb_semiring_add_edge_csr`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_set_edge_csr(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    nrows: u64,
    ncols: u64,
    indptr: *const u64,
    indices: *const u32,
    nnz: u64,
    values: *const c_void,
    value_bytes: u64,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let w = unsafe { csr_weight(nrows, ncols, indptr, indices, nnz, values, value_bytes)? };
        let r = add_edge(store, parent, child, w, true);
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// Removes the semiring edge `parent -> child` in a commit of its own; the
/// nodes it reached are rewritten. No such edge is `MMSB_ERR_NOT_FOUND` and
/// changes nothing.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_remove_edge(
    store: MmsbStore,
    parent: MmsbPageId,
    child: MmsbPageId,
    out_lsn: *mut u64,
) -> i32 {
    call(|| {
        let s = handle::durable(store)?;
        let r = s.remove_semiring_edge(PageId(parent), PageId(child));
        // SAFETY: caller contract above.
        unsafe { lsn_out(r, out_lsn) }
    })
}

/// The declaration of node `page`: its kind, dtype, length and input page (0
/// = none). `MMSB_ERR_NOT_FOUND` if `page` is not a semiring node.
///
/// # Safety
/// Each out-pointer is valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_node_info(
    store: MmsbStore,
    page: MmsbPageId,
    out_kind: *mut u8,
    out_dtype: *mut u8,
    out_len: *mut u64,
    out_input: *mut MmsbPageId,
) -> i32 {
    call(|| {
        need_out(out_kind, "out_kind")?;
        need_out(out_dtype, "out_dtype")?;
        need_out(out_len, "out_len")?;
        need_out(out_input, "out_input")?;
        let s = handle::durable(store)?;
        let d = s
            .semiring_node(PageId(page))
            .ok_or_else(|| Error::not_found(format!("{} is not a semiring node", PageId(page))))?;
        // SAFETY: caller contract above; all four checked non-null.
        unsafe {
            out(out_kind, d.kind as u8, "out_kind")?;
            out(out_dtype, d.dtype as u8, "out_dtype")?;
            out(out_len, d.len, "out_len")?;
            out(out_input, d.input.map_or(0, PageId::get), "out_input")
        }
    })
}

/// Copies node `page`'s value, `len` elements of `dtype` (which must be the
/// node's dtype; `MMSB_DTYPE_U8` also reads a bool node), into `buf` (room for
/// `cap` elements, aligned for the dtype) and writes `len` into `*out_len`.
/// With `buf` null and `cap` 0 it only reports the length; a smaller `cap` is
/// `MMSB_ERR_BUFFER_TOO_SMALL` (only `*out_len` is written).
///
/// # Safety
/// `buf` is null or valid for writing `cap` elements of `dtype`; `out_len` is
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_read_node(
    store: MmsbStore,
    page: MmsbPageId,
    dtype: u8,
    buf: *mut c_void,
    cap: u64,
    out_len: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_len, "out_len")?;
        let want = DType::from_u8(dtype)?;
        let s = handle::durable(store)?;
        let id = PageId(page);
        let d = s
            .semiring_node(id)
            .ok_or_else(|| Error::not_found(format!("{id} is not a semiring node")))?;
        let same = d.dtype == want || (d.dtype == DType::Bool && want == DType::U8);
        if !same {
            return Err(Error::invalid(format!(
                "{id} holds {}, not {}",
                d.dtype.name(),
                want.name()
            )));
        }
        // SAFETY: caller contract above.
        unsafe { out(out_len, d.len, "out_len")? };
        if buf.is_null() && cap == 0 {
            return Ok(());
        }
        if d.len > cap {
            return Err(Error::new(
                ErrorCode::BufferTooSmall,
                format!("buffer of {cap} elements is too small; {} needed", d.len),
            ));
        }
        let bytes = s.read(id)?;
        let n = usize::try_from(d.len * d.dtype.size())
            .map_err(|_| Error::invalid("the node is too large"))?;
        let src = bytes
            .get(..n)
            .ok_or_else(|| Error::invalid("the node page is too small"))?;
        let size = d.dtype.size();
        // SAFETY: caller contract above: `buf` holds `cap >= len` elements of
        // `dtype`, i.e. at least `n` bytes; the alignment is checked by
        // `slice_mut` through a per-size element type.
        unsafe {
            match size {
                8 => copy_elems::<u64>(src, buf, d.len)?,
                4 => copy_elems::<u32>(src, buf, d.len)?,
                _ => copy_elems::<u8>(src, buf, d.len)?,
            }
        }
        Ok(())
    })
}

/// Copies little-endian elements of `T`'s size from `src` into `buf`.
/// # Safety
/// `buf` is valid for writing `len` elements of `T`.
unsafe fn copy_elems<T: Copy>(src: &[u8], buf: *mut c_void, len: u64) -> Result<()> {
    // SAFETY: forwarded from this function's contract; alignment and length
    // are checked by `slice_mut`.
    let dst = unsafe { slice_mut(buf.cast::<T>(), len, "buf")? };
    // SAFETY: `dst` is `len × size_of::<T>()` writable bytes (it was just checked as
    // `len` elements of `T`), and `src` has at least that many.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(dst))
    };
    let n = bytes.len();
    bytes.copy_from_slice(src.get(..n).ok_or_else(|| Error::invalid("short node"))?);
    Ok(())
}

//! Semirings over caller buffers: folds, accumulation, properties, and the
//! semiring accumulator of a delta.
//!
//! A built-in semiring is named by two codes: the kind (`MMSB_SEMIRING_*`,
//! the numbers of `mmsb_core::SemiringKind`: 1 plus-times, 2 min-plus, 3
//! max-plus, 4 max-times, 5 min-max, 6 or-and) and the element type
//! (`MMSB_DTYPE_*`, the numbers of `mmsb_core::DType`: 1 u8, 2 i32, 3 i64, 4
//! f32, 5 f64, 6 bool (one byte), 7 u32, 8 u64). An unknown code is
//! `MMSB_ERR_INVALID_ARGUMENT`; a known pair without a built-in (max-plus over
//! u8) is `MMSB_ERR_UNSUPPORTED`. Buffers are the caller's, used in place
//! (zero-copy), and must be aligned for the element type; lengths count
//! elements. The kernels are the SIMD ones of `mmsb_core::semiring_kernels`.
//!
//! User-defined semirings: [`MmsbUserSemiring`] names `⊕` and `⊗` as C
//! function pointers over elements of 1 to 64 bytes, with the
//! `mmsb_user_semiring_*` functions. They run the same kernels with one
//! indirect call per operation: correct, but far slower than a built-in.

use crate::delta_api::MmsbDelta;
use crate::ffi_util::{call, need_out, out, slice, slice_mut};
use crate::handle::{self, lock};
use mmsb_core::semiring::{Properties, Semiring, SemiringKind};
use mmsb_core::semiring_kernels as sk;
use mmsb_core::semiring_user::CSemiring;
use mmsb_core::{mask, with_elem_size, with_semiring, Accumulator, DType, Error, Result};
use std::ffi::c_void;

/// Semiring kind: `(+, ×, 0, 1)`.
pub const MMSB_SEMIRING_PLUS_TIMES: u8 = 1;
/// Semiring kind: `(min, +, +∞, 0)` (tropical; shortest paths).
pub const MMSB_SEMIRING_MIN_PLUS: u8 = 2;
/// Semiring kind: `(max, +, −∞, 0)` (critical paths).
pub const MMSB_SEMIRING_MAX_PLUS: u8 = 3;
/// Semiring kind: `(max, ×, 0, 1)` over non-negative values.
pub const MMSB_SEMIRING_MAX_TIMES: u8 = 4;
/// Semiring kind: `(min, max, +∞, −∞)` (bottleneck paths).
pub const MMSB_SEMIRING_MIN_MAX: u8 = 5;
/// Semiring kind: `(∨, ∧, false, true)` (reachability).
pub const MMSB_SEMIRING_OR_AND: u8 = 6;

/// `⊕` is commutative (a bit of `mmsb_semiring_properties`' flags).
pub const MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD: u32 = 1;
/// `⊕` is idempotent (min, max, or).
pub const MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD: u32 = 2;
/// The semiring has subtraction (plus-times).
pub const MMSB_SEMIRING_FLAG_HAS_SUBTRACTION: u32 = 4;
/// `⊕` and `⊗` are exact on the element type (no rounding).
pub const MMSB_SEMIRING_FLAG_EXACT: u32 = 8;
/// The semiring has a terminal (absorbing) value of `⊕`.
pub const MMSB_SEMIRING_FLAG_HAS_TERMINAL: u32 = 16;
/// `⊗` is commutative (every built-in; a user semiring without it is folded in order).
pub const MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL: u32 = 32;

fn codes(kind: u8, dtype: u8) -> Result<(SemiringKind, DType)> {
    Ok((SemiringKind::from_u8(kind)?, DType::from_u8(dtype)?))
}

/// Writes the flags (`MMSB_SEMIRING_FLAG_*` bits) of the built-in (`kind`, `dtype`)
/// into `*out_flags`.
///
/// # Safety
/// `out_flags` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_properties(kind: u8, dtype: u8, out_flags: *mut u32) -> i32 {
    call(|| {
        need_out(out_flags, "out_flags")?;
        let (k, d) = codes(kind, dtype)?;
        let flags = with_semiring!(k, d, |S| {
            let s = S::default();
            let p = s.properties();
            let bit = |on: bool, flag: u32| if on { flag } else { 0 };
            Ok::<u32, Error>(
                bit(p.commutative_add, MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD)
                    | bit(p.idempotent_add, MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD)
                    | bit(p.has_subtraction, MMSB_SEMIRING_FLAG_HAS_SUBTRACTION)
                    | bit(p.exact, MMSB_SEMIRING_FLAG_EXACT)
                    | bit(s.terminal().is_some(), MMSB_SEMIRING_FLAG_HAS_TERMINAL)
                    | bit(p.commutative_mul, MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL),
            )
        })?;
        // SAFETY: caller contract above.
        unsafe { out(out_flags, flags, "out_flags") }
    })
}

/// # Safety
/// `ptr` is null or valid for writing one `E`.
unsafe fn write_elem<E>(ptr: *mut c_void, v: E, what: &str) -> Result<()> {
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<E>()) {
        return Err(Error::invalid(format!(
            "{what} is not aligned for its element type"
        )));
    }
    // SAFETY: forwarded from this function's contract; alignment checked.
    unsafe { out(ptr.cast::<E>(), v, what) }
}

/// Writes the zero and the one of (`kind`, `dtype`), one element each, into
/// `*out_zero` and `*out_one`.
///
/// # Safety
/// `out_zero` and `out_one` are null or valid for one element of `dtype` each.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_identities(
    kind: u8,
    dtype: u8,
    out_zero: *mut c_void,
    out_one: *mut c_void,
) -> i32 {
    call(|| {
        need_out(out_zero, "out_zero")?;
        need_out(out_one, "out_one")?;
        let (k, d) = codes(kind, dtype)?;
        with_semiring!(k, d, |S| {
            let s = S::default();
            // SAFETY: caller contract above.
            unsafe {
                write_elem(out_zero, s.zero(), "out_zero")?;
                write_elem(out_one, s.one(), "out_one")
            }
        })
    })
}

/// # Safety
/// `x` is null (only with `len` 0) or valid for `len` elements; `out_value`
/// valid for one.
unsafe fn fold<S: Semiring>(
    s: S,
    x: *const c_void,
    len: u64,
    out_value: *mut c_void,
    mul: bool,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let xs = unsafe { slice(x.cast::<S::Elem>(), len, "x")? };
    let v = if mul {
        sk::fold_mul(&s, xs)
    } else {
        sk::fold_add(&s, xs)
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { write_elem(out_value, v, "out_value") }
}

/// Folds `x` (`len` elements of `dtype`) with `⊕` of (`kind`, `dtype`):
/// `x[0] ⊕ … ⊕ x[len-1]`, the zero when `len` is 0; writes one element into
/// `*out_value`.
///
/// # Safety
/// `x` is null (only with `len` 0) or valid for reading `len` elements;
/// `out_value` is null or valid for writing one element.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_fold_add(
    kind: u8,
    dtype: u8,
    x: *const c_void,
    len: u64,
    out_value: *mut c_void,
) -> i32 {
    call(|| {
        need_out(out_value, "out_value")?;
        let (k, d) = codes(kind, dtype)?;
        // SAFETY: caller contract above.
        with_semiring!(k, d, |S| unsafe {
            fold(S::default(), x, len, out_value, false)
        })
    })
}

/// Folds `x` with `⊗`: `x[0] ⊗ … ⊗ x[len-1]`, the one when `len` is 0.
///
/// # Safety
/// As `mmsb_semiring_fold_add`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_fold_mul(
    kind: u8,
    dtype: u8,
    x: *const c_void,
    len: u64,
    out_value: *mut c_void,
) -> i32 {
    call(|| {
        need_out(out_value, "out_value")?;
        let (k, d) = codes(kind, dtype)?;
        // SAFETY: caller contract above.
        with_semiring!(k, d, |S| unsafe {
            fold(S::default(), x, len, out_value, true)
        })
    })
}

/// # Safety
/// `c` valid for `len` writes, `t` for `len` reads, not overlapping;
/// `words` null or valid for `mask_words` reads.
unsafe fn acc<S: Semiring>(
    s: S,
    c: *mut c_void,
    t: *const c_void,
    len: u64,
    words: Option<(*const u64, u64)>,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let (cs, ts) = unsafe {
        (
            slice_mut(c.cast::<S::Elem>(), len, "c")?,
            slice(t.cast::<S::Elem>(), len, "t")?,
        )
    };
    if !cs.is_empty() {
        let c_range = cs.as_ptr_range();
        let t_range = ts.as_ptr_range();
        if c_range.start < t_range.end && t_range.start < c_range.end {
            return Err(Error::invalid("c and t overlap"));
        }
    }
    match words {
        None => sk::accumulate(&s, cs, ts),
        Some((m, n)) => {
            // SAFETY: forwarded from this function's contract.
            let m = unsafe { slice(m, n, "mask")? };
            mask::validate(m, len)?;
            sk::accumulate_masked(&s, cs, ts, m)
        }
    }
}

/// `c[i] = c[i] ⊕ t[i]` for `i < len`, in place on the caller's `c`.
///
/// # Safety
/// `c` is null (only with `len` 0) or valid for reading and writing `len`
/// elements; `t` likewise for reading; they do not overlap (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_accumulate(
    kind: u8,
    dtype: u8,
    c: *mut c_void,
    t: *const c_void,
    len: u64,
) -> i32 {
    call(|| {
        let (k, d) = codes(kind, dtype)?;
        // SAFETY: caller contract above.
        with_semiring!(k, d, |S| unsafe { acc(S::default(), c, t, len, None) })
    })
}

/// The masked form `C<M> = C ⊕ T`: `c[i] = c[i] ⊕ t[i]` where bit `i % 64`
/// of `mask[i / 64]` is set. `mask_words` must be `ceil(len / 64)` and no bit
/// at or past `len` may be set.
///
/// # Safety
/// As `mmsb_semiring_accumulate`; `mask` is null (only with `mask_words` 0)
/// or valid for reading `mask_words` words.
#[no_mangle]
pub unsafe extern "C" fn mmsb_semiring_accumulate_masked(
    kind: u8,
    dtype: u8,
    c: *mut c_void,
    t: *const c_void,
    len: u64,
    mask: *const u64,
    mask_words: u64,
) -> i32 {
    call(|| {
        let (k, d) = codes(kind, dtype)?;
        // SAFETY: caller contract above.
        with_semiring!(k, d, |S| unsafe {
            acc(S::default(), c, t, len, Some((mask, mask_words)))
        })
    })
}

/// Makes `delta` accumulate instead of overwrite: `page ⊕= payload` over
/// elements of `dtype` with the `⊕` of `kind` (kind 0 restores overwrite).
/// The delta's range must then be aligned to the element size and its mask
/// must cover whole elements; otherwise `MMSB_ERR_INVALID_ARGUMENT` and the
/// delta is unchanged.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_delta_set_accumulator(delta: MmsbDelta, kind: u8, dtype: u8) -> i32 {
    call(|| {
        let acc = if kind == 0 {
            Accumulator::Overwrite
        } else {
            let (k, d) = codes(kind, dtype)?;
            let a = Accumulator::Semiring { kind: k, dtype: d };
            a.check()?;
            a
        };
        let d = handle::delta(delta)?;
        let mut g = lock(&d)?;
        let before = g.accumulator;
        g.accumulator = acc;
        if let Err(e) = g.validate_shape() {
            g.accumulator = before;
            return Err(e);
        }
        Ok(())
    })
}

/// `*out = *a op *b` over one element (`elem_size` bytes at each pointer) of
/// a user semiring; must not unwind (no C++ exceptions, no Julia errors).
pub type MmsbSemiringOp =
    Option<unsafe extern "C" fn(user_data: *mut c_void, a: *const u8, b: *const u8, out: *mut u8)>;

/// A user-defined semiring for the `mmsb_user_semiring_*` functions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MmsbUserSemiring {
    /// Bytes per element: 1, 2, 4, 8, 16, 32 or 64.
    pub elem_size: u64,
    /// `⊕` (required).
    pub add: MmsbSemiringOp,
    /// `⊗` (required).
    pub mul: MmsbSemiringOp,
    /// The zero, `elem_size` bytes (required).
    pub zero: *const c_void,
    /// The one, `elem_size` bytes (required).
    pub one: *const c_void,
    /// Passed to `add` and `mul` unchanged.
    pub user_data: *mut c_void,
    /// `MMSB_SEMIRING_FLAG_*`: say `COMMUTATIVE_MUL` only if `⊗` commutes
    /// (otherwise `fold_mul` keeps the order); `COMMUTATIVE_ADD` is assumed
    /// by the semiring laws but honoured the same way.
    pub flags: u32,
}

/// The semiring a caller describes, checked.
///
/// # Safety
/// `s` is null or valid for reading one `MmsbUserSemiring` whose pointers
/// follow its field docs, and whose functions follow `MmsbSemiringOp`.
unsafe fn user<const N: usize>(s: *const MmsbUserSemiring) -> Result<CSemiring<N>> {
    // SAFETY: caller contract above (null checked by `slice`).
    let d = unsafe { slice(s, 1, "semiring")? }
        .first()
        .copied()
        .ok_or_else(|| Error::invalid("semiring is a null pointer"))?;
    let add = d
        .add
        .ok_or_else(|| Error::invalid("semiring add is a null function"))?;
    let mul = d
        .mul
        .ok_or_else(|| Error::invalid("semiring mul is a null function"))?;
    if d.zero.is_null() || d.one.is_null() {
        return Err(Error::invalid("semiring zero and one must not be null"));
    }
    // SAFETY: the caller promises `elem_size` (= N, dispatched on it) readable bytes at each.
    let (zero, one) = unsafe {
        (
            slice(d.zero.cast::<u8>(), N as u64, "zero")?,
            slice(d.one.cast::<u8>(), N as u64, "one")?,
        )
    };
    let has = |bit: u32| d.flags & bit != 0;
    let props = Properties {
        commutative_add: has(MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD),
        commutative_mul: has(MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL),
        idempotent_add: has(MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD),
        has_subtraction: false,
        exact: has(MMSB_SEMIRING_FLAG_EXACT),
    };
    // SAFETY: the caller's contract for `add`, `mul` and `user_data`
    // (MmsbSemiringOp's docs) is CSemiring::new's.
    unsafe { CSemiring::<N>::new(add, mul, zero, one, props, d.user_data) }
}

/// Reads `elem_size` of a possibly null semiring description.
///
/// # Safety
/// As `user`.
unsafe fn elem_size(s: *const MmsbUserSemiring) -> Result<u64> {
    // SAFETY: caller contract.
    let d = unsafe { slice(s, 1, "semiring")? };
    d.first()
        .map(|d| d.elem_size)
        .ok_or_else(|| Error::invalid("semiring is a null pointer"))
}

/// `x[0] ⊕ … ⊕ x[len-1]` with a user semiring (its zero when `len` is 0);
/// `len` counts elements of `elem_size` bytes. One call of `add` per element.
///
/// # Safety
/// `semiring` is null or a valid description (see `MmsbUserSemiring`); `x`
/// is null (only with `len` 0) or valid for `len` elements; `out_value` is
/// null or valid for writing one element.
#[no_mangle]
pub unsafe extern "C" fn mmsb_user_semiring_fold_add(
    semiring: *const MmsbUserSemiring,
    x: *const c_void,
    len: u64,
    out_value: *mut c_void,
) -> i32 {
    call(|| {
        need_out(out_value, "out_value")?;
        // SAFETY: caller contract above.
        with_elem_size!(unsafe { elem_size(semiring)? }, |N| unsafe {
            fold(user::<N>(semiring)?, x, len, out_value, false)
        })
    })
}

/// `x[0] ⊗ … ⊗ x[len-1]` with a user semiring (its one when `len` is 0).
///
/// # Safety
/// As `mmsb_user_semiring_fold_add`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_user_semiring_fold_mul(
    semiring: *const MmsbUserSemiring,
    x: *const c_void,
    len: u64,
    out_value: *mut c_void,
) -> i32 {
    call(|| {
        need_out(out_value, "out_value")?;
        // SAFETY: caller contract above.
        with_elem_size!(unsafe { elem_size(semiring)? }, |N| unsafe {
            fold(user::<N>(semiring)?, x, len, out_value, true)
        })
    })
}

/// `c[i] = c[i] ⊕ t[i]` with a user semiring, in place.
///
/// # Safety
/// `semiring` as in `mmsb_user_semiring_fold_add`; `c` and `t` as in
/// `mmsb_semiring_accumulate`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_user_semiring_accumulate(
    semiring: *const MmsbUserSemiring,
    c: *mut c_void,
    t: *const c_void,
    len: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        with_elem_size!(unsafe { elem_size(semiring)? }, |N| unsafe {
            acc(user::<N>(semiring)?, c, t, len, None)
        })
    })
}

/// `C<M> = C ⊕ T` with a user semiring (mask layout as in
/// `mmsb_semiring_accumulate_masked`).
///
/// # Safety
/// As `mmsb_user_semiring_accumulate`; `mask` is null (only with
/// `mask_words` 0) or valid for `mask_words` words.
#[no_mangle]
pub unsafe extern "C" fn mmsb_user_semiring_accumulate_masked(
    semiring: *const MmsbUserSemiring,
    c: *mut c_void,
    t: *const c_void,
    len: u64,
    mask: *const u64,
    mask_words: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        with_elem_size!(unsafe { elem_size(semiring)? }, |N| unsafe {
            acc(user::<N>(semiring)?, c, t, len, Some((mask, mask_words)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_constants_are_the_core_codes() {
        let pairs = [
            (MMSB_SEMIRING_PLUS_TIMES, SemiringKind::PlusTimes),
            (MMSB_SEMIRING_MIN_PLUS, SemiringKind::MinPlus),
            (MMSB_SEMIRING_MAX_PLUS, SemiringKind::MaxPlus),
            (MMSB_SEMIRING_MAX_TIMES, SemiringKind::MaxTimes),
            (MMSB_SEMIRING_MIN_MAX, SemiringKind::MinMax),
            (MMSB_SEMIRING_OR_AND, SemiringKind::OrAnd),
        ];
        for (c, k) in pairs {
            assert_eq!(c, k as u8);
        }
    }
}

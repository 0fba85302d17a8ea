//! Numeric deltas: `page ⊕= payload` with a semiring accumulator.
//!
//! A delta whose [`Accumulator`] is `Semiring { kind, dtype }` reads its range
//! as elements of `dtype` and sets `page[i] = page[i] ⊕ payload[i]` for each
//! masked element, with the `⊕` of the built-in semiring `kind`. When `⊕` is
//! commutative (every built-in's is), any set of such deltas with one
//! accumulator produces the same page whatever order they apply in — exactly
//! for integer, boolean, min and max semirings, and within rounding for float
//! sums — so concurrent writers need not coordinate: a counter, a running
//! minimum, a set of reached flags.
//!
//! **Shape rules** (checked by [`Delta::validate_shape`] and
//! [`Delta::validate`]): the range starts at a multiple of the element size
//! (elements are aligned to byte 0 of the page, as in [`NumericView`]) and
//! is a whole number of elements; the byte mask (one bit per byte, as for
//! every delta) sets or clears all bytes of an element together; a sparse
//! payload packs the masked elements in order. When the page has a numeric
//! view, [`crate::PageStore::check_delta`] also requires the delta's dtype to
//! be the view's and its range to lie inside the view.
//!
//! The constructors below build such deltas from typed values. Applying goes
//! through [`crate::apply::apply_with`] like any delta, which sends numeric
//! deltas to [`apply_accumulate`]: decode the range and the payload, run
//! [`crate::semiring_kernels::accumulate_masked`], encode the range back.
//! [`apply_accumulate_reference`] does the same one element at a time with
//! the semiring's scalar `⊕` (the oracle).

use crate::delta::{Accumulator, Delta, Payload};
use crate::dtype::{decode, encode, encode_into, DType, Element, NumericView};
use crate::error::{Error, Result};
use crate::mask;
use crate::page_id::PageId;
use crate::semiring::{Semiring, SemiringKind};
use crate::semiring_kernels;
use crate::with_semiring;

/// The byte mask of elements `flags` (one flag per element of `size` bytes).
fn byte_mask(flags: &[bool], size: usize) -> Vec<u64> {
    let mut words = vec![0u64; mask::words_for((flags.len() * size) as u64) as usize];
    for (j, &f) in flags.iter().enumerate() {
        if f {
            for b in j * size..(j + 1) * size {
                mask::set_bit(&mut words, b);
            }
        }
    }
    words
}

fn build(
    page: PageId,
    kind: SemiringKind,
    dtype: DType,
    first: u64,
    bytes: Vec<u8>,
) -> Result<Delta> {
    let offset = first
        .checked_mul(dtype.size())
        .ok_or_else(|| Error::invalid("element offset overflows"))?;
    let mut d = Delta::dense(page, offset, bytes);
    d.accumulator = Accumulator::Semiring { kind, dtype };
    Ok(d)
}

/// `page[first + i] ⊕= values[i]` for every `i`, over `E`'s dtype.
pub fn accumulate<E: Element>(
    page: PageId,
    kind: SemiringKind,
    first: u64,
    values: &[E],
) -> Result<Delta> {
    accumulate_bytes(page, kind, E::DTYPE, first, encode(values), None)
}

/// `page[first + i] ⊕= values[i]` where `flags[i]` (dense payload under a mask).
pub fn accumulate_masked<E: Element>(
    page: PageId,
    kind: SemiringKind,
    first: u64,
    values: &[E],
    flags: &[bool],
) -> Result<Delta> {
    accumulate_bytes(page, kind, E::DTYPE, first, encode(values), Some(flags))
}

/// `page[first + i] ⊕= v` for each `(i, v)` of `entries` (indices strictly
/// increasing, below `len`): a sparse payload over a range of `len` elements.
pub fn accumulate_sparse<E: Element>(
    page: PageId,
    kind: SemiringKind,
    first: u64,
    len: u64,
    entries: &[(u64, E)],
) -> Result<Delta> {
    let n = usize::try_from(len).map_err(|_| Error::invalid("range too long"))?;
    let mut flags = vec![false; n];
    let mut prev: Option<u64> = None;
    for &(i, _) in entries {
        if i >= len || prev.is_some_and(|p| i <= p) {
            return Err(Error::invalid(format!(
                "sparse entry index {i} is out of order or outside 0..{len}"
            )));
        }
        flags[i as usize] = true;
        prev = Some(i);
    }
    let values: Vec<E> = entries.iter().map(|&(_, v)| v).collect();
    let mut d = build(page, kind, E::DTYPE, first, Vec::new())?;
    d.len = len * E::DTYPE.size();
    d.mask = Some(byte_mask(&flags, std::mem::size_of::<E>()));
    d.payload = Payload::Sparse(encode(&values));
    d.validate_shape()?;
    Ok(d)
}

/// The untyped form: `bytes` are little-endian elements of `dtype`
/// (`flags`, one per element, masks them). [`DType::Bool`] pages use it with
/// one byte per value.
pub fn accumulate_bytes(
    page: PageId,
    kind: SemiringKind,
    dtype: DType,
    first: u64,
    bytes: Vec<u8>,
    flags: Option<&[bool]>,
) -> Result<Delta> {
    let size = dtype.size() as usize;
    let mut d = build(page, kind, dtype, first, bytes)?;
    if let Some(f) = flags {
        if f.len() * size != d.len as usize {
            return Err(Error::invalid(format!(
                "{} mask flags for {} elements",
                f.len(),
                d.len as usize / size
            )));
        }
        d.mask = Some(byte_mask(f, size));
    }
    d.validate_shape()?;
    Ok(d)
}

/// The shape rules of a numeric delta (no-op for overwrite deltas); called by
/// [`Delta::validate_shape`].
pub fn validate_accumulator(d: &Delta) -> Result<()> {
    let Accumulator::Semiring { dtype, .. } = d.accumulator else {
        return Ok(());
    };
    d.accumulator.check()?;
    let size = dtype.size();
    if !d.offset.is_multiple_of(size) || !d.len.is_multiple_of(size) {
        return Err(Error::invalid(format!(
            "a {} accumulate delta needs a range aligned to {size} bytes, got {}+{}",
            dtype.name(),
            d.offset,
            d.len
        )));
    }
    if let Some(m) = &d.mask {
        if m.len() as u64 != mask::words_for(d.len) {
            return Ok(()); // the mask rules report this one
        }
        let size = size as usize;
        for j in 0..(d.len as usize / size) {
            let first = mask::bit(m, j * size);
            if (1..size).any(|b| mask::bit(m, j * size + b) != first) {
                return Err(Error::invalid(format!(
                    "the mask of a {} accumulate delta covers element {j} only partly",
                    dtype.name()
                )));
            }
        }
    }
    Ok(())
}

/// Checks a numeric delta against the page's view, if the page has one: the
/// same dtype, the range inside the view.
pub fn check_view(d: &Delta, view: Option<NumericView>) -> Result<()> {
    let (Accumulator::Semiring { dtype, .. }, Some(v)) = (d.accumulator, view) else {
        return Ok(());
    };
    if v.dtype != dtype {
        return Err(Error::invalid(format!(
            "a {} accumulate delta on {}, whose view is {}",
            dtype.name(),
            d.page,
            v.dtype.name()
        )));
    }
    let end = d.offset.saturating_add(d.len);
    if v.byte_len().is_none_or(|b| end > b) {
        return Err(Error::invalid(format!(
            "accumulate delta range {}..{end} lies outside the view of {} ({} x {})",
            d.offset,
            d.page,
            v.len,
            v.dtype.name()
        )));
    }
    Ok(())
}

/// The element mask (one bit per element) of a validated numeric delta's byte mask.
fn element_mask(byte_words: &[u64], n: usize, size: usize) -> Vec<u64> {
    let mut words = vec![0u64; mask::words_for(n as u64) as usize];
    for j in 0..n {
        if mask::bit(byte_words, j * size) {
            mask::set_bit(&mut words, j);
        }
    }
    words
}

/// The payload as one element per element of the range (sparse payloads
/// scattered; unmasked slots hold zero, which the mask excludes anyway).
fn payload_elements<S: Semiring>(
    s: &S,
    d: &Delta,
    n: usize,
    emask: Option<&[u64]>,
) -> Result<Vec<S::Elem>>
where
    S::Elem: Element,
{
    match (&d.payload, emask) {
        (Payload::Dense(b), _) => decode::<S::Elem>(b),
        (Payload::Sparse(b), Some(m)) => {
            let packed = decode::<S::Elem>(b)?;
            let mut t = vec![s.zero(); n];
            let mut k = 0usize;
            for (j, slot) in t.iter_mut().enumerate() {
                if mask::bit(m, j) {
                    *slot = *packed
                        .get(k)
                        .ok_or_else(|| Error::invalid("sparse payload too short"))?;
                    k += 1;
                }
            }
            Ok(t)
        }
        (Payload::Sparse(_), None) => Err(Error::invalid("a sparse payload needs a mask")),
    }
}

fn apply_typed<S: Semiring + Default>(dst: &mut [u8], d: &Delta, reference: bool) -> Result<()>
where
    S::Elem: Element,
{
    let s = S::default();
    let size = std::mem::size_of::<S::Elem>();
    let mut c = decode::<S::Elem>(dst)?;
    let n = c.len();
    let emask = d.mask.as_ref().map(|m| element_mask(m, n, size));
    let t = payload_elements(&s, d, n, emask.as_deref())?;
    if t.len() != n {
        return Err(Error::invalid("payload length differs from the range"));
    }
    match (&emask, reference) {
        (Some(m), true) => semiring_kernels::accumulate_masked_reference(&s, &mut c, &t, m)?,
        (Some(m), false) => semiring_kernels::accumulate_masked(&s, &mut c, &t, m)?,
        (None, true) => semiring_kernels::accumulate_reference(&s, &mut c, &t)?,
        (None, false) => semiring_kernels::accumulate(&s, &mut c, &t)?,
    }
    encode_into(&c, dst)
}

fn apply_inner(dst: &mut [u8], d: &Delta, reference: bool) -> Result<()> {
    let Accumulator::Semiring { kind, dtype } = d.accumulator else {
        return Err(Error::invalid("not a numeric (semiring accumulator) delta"));
    };
    if dst.len() as u64 != d.len {
        return Err(Error::invalid(
            "destination length differs from the delta range",
        ));
    }
    validate_accumulator(d)?;
    with_semiring!(kind, dtype, |S| apply_typed::<S>(dst, d, reference))
}

/// Applies a numeric delta to `dst`, the page bytes of its range, with the
/// fastest accumulate kernel.
pub fn apply_accumulate(dst: &mut [u8], d: &Delta) -> Result<()> {
    apply_inner(dst, d, false)
}

/// [`apply_accumulate`] one element at a time with the scalar `⊕`: the oracle.
pub fn apply_accumulate_reference(dst: &mut [u8], d: &Delta) -> Result<()> {
    apply_inner(dst, d, true)
}

/// Whether applying the numeric delta `d` to `dst` would change a byte.
pub fn would_change(dst: &[u8], d: &Delta) -> bool {
    let mut copy = dst.to_vec();
    match apply_accumulate(&mut copy, d) {
        Ok(()) => copy != dst,
        // An invalid delta is reported by the apply that follows.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn plus_times_accumulate_adds_where_masked() {
        let mut page = encode(&[1.0f64, 2.0, 3.0, 4.0]);
        let d = accumulate_masked(
            PageId(1),
            SemiringKind::PlusTimes,
            1,
            &[10.0f64, 20.0],
            &[true, false],
        )
        .unwrap();
        d.validate(32).unwrap();
        let r = d.offset as usize..(d.offset + d.len) as usize;
        apply_accumulate(&mut page[r], &d).unwrap();
        assert_eq!(decode::<f64>(&page).unwrap(), vec![1.0, 12.0, 3.0, 4.0]);
    }

    #[test]
    fn sparse_min_plus_accumulate_keeps_the_minimum() {
        let mut page = encode(&[5i32, 5, 5, 5]);
        let d = accumulate_sparse(PageId(1), SemiringKind::MinPlus, 0, 4, &[(1, 3i32), (3, 9)])
            .unwrap();
        apply_accumulate(&mut page, &d).unwrap();
        assert_eq!(decode::<i32>(&page).unwrap(), vec![5, 3, 5, 5]);
        assert!(!would_change(&page, &d));
    }

    #[test]
    fn misaligned_or_partly_masked_numeric_deltas_are_invalid() {
        let mut d = accumulate(PageId(1), SemiringKind::PlusTimes, 0, &[1i32, 2]).unwrap();
        d.offset = 2;
        assert_eq!(d.validate(16).unwrap_err().code, ErrorCode::InvalidArgument);
        let mut d = accumulate(PageId(1), SemiringKind::PlusTimes, 0, &[1i32, 2]).unwrap();
        d.mask = Some(vec![0b11]);
        assert!(d.validate(16).is_err());
        let bad = Delta {
            accumulator: Accumulator::Semiring {
                kind: SemiringKind::MaxPlus,
                dtype: DType::U8,
            },
            ..Delta::dense(PageId(1), 0, vec![1])
        };
        assert!(bad.validate(4).is_err());
    }

    #[test]
    fn accumulator_codes_round_trip_and_reject_unsupported_pairs() {
        for k in SemiringKind::ALL {
            for dt in k.dtypes() {
                let a = Accumulator::Semiring { kind: k, dtype: dt };
                assert_eq!(Accumulator::from_u8(a.code()).unwrap(), a);
            }
        }
        assert_eq!(Accumulator::from_u8(0).unwrap(), Accumulator::Overwrite);
        let max_plus_u8 = 0x80 | ((SemiringKind::MaxPlus as u8) << 4) | DType::U8 as u8;
        assert!(Accumulator::from_u8(max_plus_u8).is_err());
        assert!(Accumulator::from_u8(1).is_err());
    }

    #[test]
    fn view_mismatch_is_rejected() {
        let d = accumulate(PageId(1), SemiringKind::PlusTimes, 2, &[1i64]).unwrap();
        let v = |dtype, len| Some(NumericView { dtype, len });
        assert!(check_view(&d, v(DType::I64, 3)).is_ok());
        assert!(check_view(&d, v(DType::I64, 2)).is_err());
        assert!(check_view(&d, v(DType::F64, 3)).is_err());
        assert!(check_view(&d, None).is_ok());
    }
}

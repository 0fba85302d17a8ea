//! Numeric (accumulate) deltas on the device: `page ⊕= payload` where masked.
//!
//! mmsb-core deltas may carry [`Accumulator::Semiring`]`{ kind, dtype }`:
//! the range is read as elements of `dtype` and each masked element becomes
//! `page[i] ⊕ payload[i]` (see `mmsb_core::numeric_delta`). On the device
//! such a delta is one launch of the masked accumulate kernel of
//! `kernels/semiring.cu` (`mmsb_accumulate_<semiring>_<type>`) over the
//! page's range, in place: the host turns the delta into a dense operand
//! `t` (a sparse payload is scattered to the masked elements) and an
//! element mask (one bit per element, from the byte mask whose bits cover
//! whole elements), uploads both and launches with `c` = the page's device
//! address plus the delta's offset (element-aligned, as the shape rules
//! require). [`device_pair`] says which (kind, dtype) pairs have kernels:
//! plus-times, min-plus, max-plus and or-and over the types with GPU
//! instantiations, where mmsb-core defines them. Other pairs (max-times,
//! min-max; `bool`, `u32`, `u64` elements) run on the CPU against the
//! page's range: read back, `mmsb_core::apply::apply`, written back — the
//! page stays on the device. The emulated device runs the same conversion
//! through the CPU reference kernels, so CPU CI tests it.
//!
//! Accumulate deltas are not idempotent: re-applying one over its own
//! partial application is wrong. The store therefore gives each one a launch
//! group of its own and never sends one through graph replay; a launch that
//! fails before running leaves the page unchanged, and a fault inside a
//! kernel poisons the context, so the read-back the fallback would use fails
//! and the page is restored from its host copy or reported (`GpuError`).

use crate::semiring_core::{ElemType, Semiring};
use mmsb_core::delta::{Accumulator, Delta, Payload};
use mmsb_core::dtype::DType;
use mmsb_core::error::{Error, Result};
use mmsb_core::mask;

/// The device kernel for a numeric delta's accumulator, if there is one.
pub fn device_pair(acc: Accumulator) -> Option<(Semiring, ElemType)> {
    let Accumulator::Semiring { kind, dtype } = acc else {
        return None;
    };
    let s = Semiring::from_kind(kind)?;
    let t = match dtype {
        DType::U8 => ElemType::U8,
        DType::I32 => ElemType::I32,
        DType::I64 => ElemType::I64,
        DType::F32 => ElemType::F32,
        DType::F64 => ElemType::F64,
        DType::Bool | DType::U32 | DType::U64 => return None,
    };
    s.supports(t).then_some((s, t))
}

/// A numeric delta as kernel operands: the dense operand `t` (the delta's
/// range, masked-out elements zero), the element mask (`None`: every
/// element) and the element count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccumulateOperands {
    /// Little-endian elements, one per element of the range.
    pub t: Vec<u8>,
    /// One bit per element.
    pub mask: Option<Vec<u64>>,
    /// Elements in the range.
    pub n: u64,
}

/// Converts a validated numeric delta of element size `size` into operands.
pub fn operands(d: &Delta, size: usize) -> Result<AccumulateOperands> {
    let len = d.len as usize;
    if size == 0 || !len.is_multiple_of(size) || !(d.offset as usize).is_multiple_of(size) {
        return Err(Error::invalid("numeric delta is not element-aligned"));
    }
    let n = len / size;
    let Some(words) = d.mask.as_deref() else {
        return match &d.payload {
            Payload::Dense(b) if b.len() == len => Ok(AccumulateOperands {
                t: b.clone(),
                mask: None,
                n: n as u64,
            }),
            _ => Err(Error::invalid(
                "numeric delta payload does not fit its range",
            )),
        };
    };
    let mut emask = vec![0u64; mask::words_for(n as u64) as usize];
    let mut t = vec![0u8; len];
    let mut packed = 0usize;
    for j in 0..n {
        if !mask::bit(words, j * size) {
            continue;
        }
        mask::set_bit(&mut emask, j);
        let src = match &d.payload {
            Payload::Dense(b) => b.get(j * size..(j + 1) * size),
            Payload::Sparse(b) => {
                let s = b.get(packed..packed + size);
                packed += size;
                s
            }
        }
        .ok_or_else(|| Error::invalid("numeric delta payload is too short"))?;
        t[j * size..(j + 1) * size].copy_from_slice(src);
    }
    Ok(AccumulateOperands {
        t,
        mask: Some(emask),
        n: n as u64,
    })
}

/// Applies the operands to `range` (the page's bytes under the delta) with
/// the CPU reference kernels of this crate — what the emulated device runs
/// in place of the accumulate kernel.
pub fn accumulate_cpu(
    s: Semiring,
    t: ElemType,
    range: &mut [u8],
    op: &AccumulateOperands,
) -> Result<()> {
    use crate::semiring_core::{accumulate, Elem};
    fn run<T: Elem>(s: Semiring, range: &mut [u8], op: &AccumulateOperands) -> Result<()> {
        let size = std::mem::size_of::<T>();
        let mut c: Vec<T> = crate::semiring_gpu::from_bytes(range);
        let tv: Vec<T> = crate::semiring_gpu::from_bytes(&op.t);
        accumulate(s, &mut c, &tv, op.mask.as_deref())?;
        range.copy_from_slice(T::slice_as_bytes(&c));
        debug_assert_eq!(range.len(), c.len() * size);
        Ok(())
    }
    match t {
        ElemType::F32 => run::<f32>(s, range, op),
        ElemType::F64 => run::<f64>(s, range, op),
        ElemType::I32 => run::<i32>(s, range, op),
        ElemType::I64 => run::<i64>(s, range, op),
        ElemType::U8 => run::<u8>(s, range, op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsb_core::numeric_delta;
    use mmsb_core::semiring::SemiringKind;
    use mmsb_core::PageId;

    #[test]
    fn sparse_numeric_delta_scatters_to_masked_elements() {
        let d = numeric_delta::accumulate_sparse::<i32>(
            PageId(1),
            SemiringKind::PlusTimes,
            2,
            4,
            &[(1, 7), (3, -2)],
        )
        .unwrap();
        let op = operands(&d, 4).unwrap();
        assert_eq!(op.n, 4);
        assert_eq!(op.mask, Some(vec![0b1010]));
        let mut want = vec![0u8; 16];
        want[4..8].copy_from_slice(&7i32.to_le_bytes());
        want[12..16].copy_from_slice(&(-2i32).to_le_bytes());
        assert_eq!(op.t, want);
    }

    #[test]
    fn pairs_without_kernels_have_no_device_pair() {
        let acc = |kind, dtype| Accumulator::Semiring { kind, dtype };
        assert!(device_pair(acc(SemiringKind::MinPlus, DType::F64)).is_some());
        assert!(device_pair(acc(SemiringKind::MaxTimes, DType::F64)).is_none());
        assert!(device_pair(acc(SemiringKind::PlusTimes, DType::U64)).is_none());
        assert!(device_pair(Accumulator::Overwrite).is_none());
    }
}

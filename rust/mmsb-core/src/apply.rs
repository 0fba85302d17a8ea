//! Delta apply kernels and their run-time dispatch.
//!
//! Applying a delta is the hottest loop in MMSB, so it has several kernels:
//!
//! * [`apply_reference`]: one byte at a time, obviously right; the oracle for tests.
//! * the *scalar* kernel: walks the mask a word (64 bytes) at a time, skips
//!   all-zero words, copies all-one words whole, and handles mixed words byte
//!   by byte. Portable, and the fallback everywhere.
//! * SIMD kernels chosen at run time with `is_x86_feature_detected!`, in their
//!   own files: `apply_avx2.rs` (byte mask expanded from the mask word, blend)
//!   and `apply_avx512.rs` (one byte-masked store per mask word; `vpexpandb`
//!   for sparse payloads). They compile only for x86_64; elsewhere
//!   [`Kernel::is_available`] says `false`. Both skip all-zero mask words eight
//!   at a time and copy runs of all-ones words with one `memcpy`.
//!
//! A delta without a mask (a full range) is a plain `copy_from_slice` on every path.
//! A numeric delta (a semiring accumulator, `page ⊕= payload`) goes to
//! [`crate::numeric_delta`] from [`apply_with`], [`apply_reference`] and
//! [`would_change`]; the byte-level kernels [`apply_masked`] and
//! [`apply_sparse`] always overwrite.
//! Every kernel takes `dst` = the page bytes of the delta's range, so `dst.len()`
//! equals the range length; the callers in [`crate::page_store`] validate the
//! delta first, and each kernel re-checks lengths and returns an error rather
//! than reading out of bounds.

use crate::delta::{Accumulator, Delta, Payload};
use crate::error::{Error, Result};
use crate::mask;

/// An apply implementation. [`Kernel::best`] picks the fastest one this CPU runs.
///
/// Every variant exists on every target; the SIMD ones report
/// [`Kernel::is_available`] `false` where the CPU (or the target architecture)
/// lacks them, and asking an unavailable kernel to apply is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable word-at-a-time kernel.
    Scalar,
    /// AVX2: blends 32-byte halves under a byte mask expanded from the mask word
    /// (x86_64 with AVX2 only; sparse payloads use a bit loop).
    Avx2,
    /// AVX-512: one byte-masked 64-byte store per mask word (x86_64 with
    /// AVX-512F and AVX-512BW; sparse payloads also need AVX-512VBMI2 for the
    /// byte expand, and fall back to the scalar kernel without it).
    Avx512,
}

impl Kernel {
    /// Every kernel, portable first.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            Kernel::Avx2 => has_avx2(),
            Kernel::Avx512 => has_avx512(),
        }
    }

    /// The fastest kernel available on this CPU (detected once).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Kernel::ALL
                .iter()
                .rev()
                .copied()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// A short name for reports (`scalar`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// What the AVX-512 sparse path needs beyond [`has_avx512`]: the byte expand.
#[cfg(target_arch = "x86_64")]
fn has_avx512_expand() -> bool {
    has_avx512()
        && is_x86_feature_detected!("avx512vbmi2")
        && is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("bmi2")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

fn unavailable(kernel: Kernel) -> Error {
    Error::invalid(format!(
        "the {} apply kernel is not available on this CPU",
        kernel.name()
    ))
}

fn check_masked(dst: &[u8], src_len: usize, words: &[u64], sparse: bool) -> Result<()> {
    mask::validate(words, dst.len() as u64)?;
    let want = if sparse {
        mask::count_ones(words) as usize
    } else {
        dst.len()
    };
    if src_len != want {
        return Err(Error::invalid(format!(
            "payload has {src_len} bytes, expected {want}"
        )));
    }
    Ok(())
}

/// The byte-at-a-time reference: what every kernel must equal.
pub fn apply_reference(dst: &mut [u8], delta: &Delta) -> Result<()> {
    if dst.len() as u64 != delta.len {
        return Err(Error::invalid(
            "destination length differs from the delta range",
        ));
    }
    delta.validate_shape()?;
    if delta.accumulator != Accumulator::Overwrite {
        return crate::numeric_delta::apply_accumulate_reference(dst, delta);
    }
    let mut next_sparse = 0usize;
    for (i, d) in dst.iter_mut().enumerate() {
        let set = delta.mask.as_ref().is_none_or(|m| mask::bit(m, i));
        if !set {
            continue;
        }
        *d = match &delta.payload {
            Payload::Dense(b) => b[i],
            Payload::Sparse(b) => {
                let v = b[next_sparse];
                next_sparse += 1;
                v
            }
        };
    }
    Ok(())
}

/// Dense payload under a mask: `dst[i] = src[i]` where bit `i` is set.
pub fn apply_masked(kernel: Kernel, dst: &mut [u8], src: &[u8], words: &[u64]) -> Result<()> {
    check_masked(dst, src.len(), words, false)?;
    match kernel {
        Kernel::Scalar => masked_scalar(dst, src, words),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; check_masked verified the lengths and the mask.
        Kernel::Avx2 if has_avx2() => unsafe { crate::apply_avx2::masked(dst, src, words) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F/BW were detected; check_masked verified the lengths and the mask.
        Kernel::Avx512 if has_avx512() => unsafe { crate::apply_avx512::masked(dst, src, words) },
        _ => return Err(unavailable(kernel)),
    }
    Ok(())
}

/// Sparse payload: the `k`-th set bit of the mask receives `values[k]`.
pub fn apply_sparse(kernel: Kernel, dst: &mut [u8], values: &[u8], words: &[u64]) -> Result<()> {
    check_masked(dst, values.len(), words, true)?;
    match kernel {
        Kernel::Scalar => sparse_scalar(dst, values, words),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; check_masked verified the mask and the value count.
        Kernel::Avx2 if has_avx2() => unsafe { crate::apply_avx2::sparse(dst, values, words) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F/BW/VBMI2 were detected; check_masked verified the mask
        // and the value count.
        Kernel::Avx512 if has_avx512_expand() => unsafe {
            crate::apply_avx512::sparse(dst, values, words)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if has_avx512() => sparse_scalar(dst, values, words),
        _ => return Err(unavailable(kernel)),
    }
    Ok(())
}

/// Applies a (validated) delta to `dst`, the page bytes of its range, with `kernel`.
pub fn apply_with(kernel: Kernel, dst: &mut [u8], delta: &Delta) -> Result<()> {
    if dst.len() as u64 != delta.len {
        return Err(Error::invalid(
            "destination length differs from the delta range",
        ));
    }
    if delta.accumulator != Accumulator::Overwrite {
        // Numeric deltas (`page ⊕= payload`) go to the semiring kernels, which
        // pick their own SIMD instance.
        return crate::numeric_delta::apply_accumulate(dst, delta);
    }
    match (&delta.payload, &delta.mask) {
        (Payload::Dense(src), None) => {
            if src.len() != dst.len() {
                return Err(Error::invalid(
                    "dense payload length differs from the range",
                ));
            }
            dst.copy_from_slice(src);
            Ok(())
        }
        (Payload::Dense(src), Some(m)) if mask::is_full(m, delta.len) && src.len() == dst.len() => {
            dst.copy_from_slice(src);
            Ok(())
        }
        (Payload::Dense(src), Some(m)) => apply_masked(kernel, dst, src, m),
        (Payload::Sparse(v), Some(m)) => apply_sparse(kernel, dst, v, m),
        (Payload::Sparse(_), None) => Err(Error::invalid("a sparse payload needs a mask")),
    }
}

/// Applies a (validated) delta to `dst` with the best kernel for this CPU.
pub fn apply(dst: &mut [u8], delta: &Delta) -> Result<()> {
    apply_with(Kernel::best(), dst, delta)
}

/// Whether applying `delta` to `dst` (its range) would change at least one byte.
/// Stops at the first difference, so a real change costs almost nothing to detect.
pub fn would_change(dst: &[u8], delta: &Delta) -> bool {
    if delta.accumulator != Accumulator::Overwrite {
        return crate::numeric_delta::would_change(dst, delta);
    }
    match (&delta.payload, &delta.mask) {
        (Payload::Dense(src), None) => dst != src.as_slice(),
        (Payload::Dense(src), Some(m)) => {
            for (w, &word) in m.iter().enumerate() {
                if word == 0 {
                    continue;
                }
                let base = w * 64;
                let end = (base + 64).min(dst.len());
                if word == u64::MAX && dst[base..end] != src[base..end] {
                    return true;
                }
                let mut bits = word;
                while bits != 0 {
                    let i = base + bits.trailing_zeros() as usize;
                    if dst[i] != src[i] {
                        return true;
                    }
                    bits &= bits - 1;
                }
            }
            false
        }
        (Payload::Sparse(v), Some(m)) => {
            let mut k = 0usize;
            for (w, &word) in m.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    if dst[i] != v[k] {
                        return true;
                    }
                    k += 1;
                    bits &= bits - 1;
                }
            }
            false
        }
        (Payload::Sparse(_), None) => false,
    }
}

fn masked_scalar(dst: &mut [u8], src: &[u8], words: &[u64]) {
    for (w, &word) in words.iter().enumerate() {
        if word == 0 {
            continue;
        }
        let base = w * 64;
        let end = (base + 64).min(dst.len());
        if word == u64::MAX {
            dst[base..end].copy_from_slice(&src[base..end]);
            continue;
        }
        let mut bits = word;
        while bits != 0 {
            let i = base + bits.trailing_zeros() as usize;
            dst[i] = src[i];
            bits &= bits - 1;
        }
    }
}

fn sparse_scalar(dst: &mut [u8], values: &[u8], words: &[u64]) {
    let mut k = 0usize;
    for (w, &word) in words.iter().enumerate() {
        if word == 0 {
            continue;
        }
        let base = w * 64;
        if word == u64::MAX {
            dst[base..base + 64].copy_from_slice(&values[k..k + 64]);
            k += 64;
            continue;
        }
        let mut bits = word;
        while bits != 0 {
            dst[base + bits.trailing_zeros() as usize] = values[k];
            k += 1;
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_id::PageId;

    #[test]
    fn masked_apply_writes_only_masked_bytes() {
        let mut dst = vec![0u8; 70];
        let src: Vec<u8> = (1..=70).collect();
        let mut m = vec![0u64; 2];
        mask::set_bit(&mut m, 0);
        mask::set_bit(&mut m, 69);
        apply_masked(Kernel::Scalar, &mut dst, &src, &m).unwrap();
        assert_eq!(dst[0], 1);
        assert_eq!(dst[69], 70);
        assert_eq!(dst[1..69].iter().filter(|&&b| b != 0).count(), 0);
    }

    #[test]
    fn sparse_apply_fills_set_bits_in_order() {
        let mut dst = vec![0u8; 128];
        let m = vec![u64::MAX, 0b1001];
        let values: Vec<u8> = (0..66).collect();
        apply_sparse(Kernel::Scalar, &mut dst, &values, &m).unwrap();
        assert_eq!(&dst[..64], &values[..64]);
        assert_eq!(dst[64], 64);
        assert_eq!(dst[67], 65);
        assert_eq!(dst[65], 0);
    }

    #[test]
    fn kernels_reject_length_mismatches() {
        let mut dst = vec![0u8; 10];
        assert!(apply_masked(Kernel::Scalar, &mut dst, &[0; 9], &[1]).is_err());
        assert!(apply_sparse(Kernel::Scalar, &mut dst, &[0; 2], &[1]).is_err());
        assert!(apply_masked(Kernel::Scalar, &mut dst, &[0; 10], &[1, 0]).is_err());
    }

    #[test]
    fn would_change_detects_no_ops() {
        let dst = vec![5u8; 8];
        let same = Delta::dense(PageId(1), 0, vec![5; 8]);
        let diff = Delta::masked(PageId(1), 0, vec![5, 5, 5, 6, 5, 5, 5, 5], vec![0b1000]);
        let masked_away = Delta::masked(PageId(1), 0, vec![6; 8], vec![0]);
        assert!(!would_change(&dst, &same));
        assert!(would_change(&dst, &diff));
        assert!(!would_change(&dst, &masked_away));
    }
}

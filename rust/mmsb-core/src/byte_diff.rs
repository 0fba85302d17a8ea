//! Where two byte strings differ: the first and the last differing index.
//!
//! The wave's cutoff compares a recomputed page with its old bytes, and a
//! changed page becomes a derived write over the range from the first to the
//! last differing byte. [`diff_range`] finds both in one pass over the bytes at
//! most: a forward scan to the first difference, then a backward scan from the
//! end that stops there. Each scan compares whole blocks: 64 bytes per step
//! with AVX2 (two 32-byte compares and a mask, detected at run time), else 32
//! bytes per step as four XORed `u64` words; only the block that differs is
//! resolved to a byte (from the mask or the word's trailing / leading zeros).
//! An earlier version compared 64-byte slices with `memcmp`, one library call
//! per block: on a 4 KiB page whose only change is in its first word the
//! backward scan made 64 calls, about as costly as the whole recompute.
//! [`diff_range_reference`] is the byte-at-a-time definition the fast scans
//! are tested against.

/// Block size of the portable scan: four `u64` words.
const WORDS_BLOCK: usize = 32;

/// The first and the last index where `a` and `b` differ (over their common
/// length), or `None` if they are equal there.
pub fn diff_range(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        if n >= 64 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above); `a` and `b` have the same length.
            return unsafe { avx2::diff_range(a, b) };
        }
    }
    diff_range_words(a, b)
}

/// The first index where `a` and `b` differ (over their common length).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    diff_range(a, b).map(|(first, _)| first)
}

/// The last index where `a` and `b` differ (over their common length).
pub fn last_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    diff_range(a, b).map(|(_, last)| last)
}

/// The byte-at-a-time definition of [`diff_range`] (tests compare against it).
pub fn diff_range_reference(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
    let first = a.iter().zip(b).position(|(x, y)| x != y)?;
    let last = a.iter().zip(b).rposition(|(x, y)| x != y)?;
    Some((first, last))
}

/// Four little-endian words of `a ^ b` (both exactly [`WORDS_BLOCK`] long).
#[inline(always)]
fn xor_words(a: &[u8], b: &[u8]) -> [u64; 4] {
    let mut w = [0u64; 4];
    for (k, x) in w.iter_mut().enumerate() {
        let r = k * 8..k * 8 + 8;
        let (mut p, mut q) = ([0u8; 8], [0u8; 8]);
        p.copy_from_slice(&a[r.clone()]);
        q.copy_from_slice(&b[r]);
        *x = u64::from_le_bytes(p) ^ u64::from_le_bytes(q);
    }
    w
}

/// [`diff_range`] without SIMD intrinsics: blocks of four `u64` words.
/// `a` and `b` have the same length.
pub fn diff_range_words(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
    let n = a.len().min(b.len());
    let blocks = n / WORDS_BLOCK * WORDS_BLOCK;
    let mut first = None;
    let mut i = 0;
    while i < blocks {
        let w = xor_words(&a[i..i + WORDS_BLOCK], &b[i..i + WORDS_BLOCK]);
        if (w[0] | w[1] | w[2] | w[3]) != 0 {
            // The lowest differing byte of the first non-zero word (little-endian).
            let (k, x) = w.iter().enumerate().find(|(_, x)| **x != 0)?;
            first = Some(i + k * 8 + (x.trailing_zeros() / 8) as usize);
            break;
        }
        i += WORDS_BLOCK;
    }
    let first = match first {
        Some(f) => f,
        None => (blocks..n).find(|&k| a[k] != b[k])?,
    };
    // Backward: the tail bytes, then whole blocks down to the first difference.
    if let Some(k) = (blocks.max(first)..n).rev().find(|&k| a[k] != b[k]) {
        return Some((first, k));
    }
    let mut j = blocks;
    while j >= first + WORDS_BLOCK && j >= WORDS_BLOCK {
        let w = xor_words(&a[j - WORDS_BLOCK..j], &b[j - WORDS_BLOCK..j]);
        if (w[0] | w[1] | w[2] | w[3]) != 0 {
            let (k, x) = w.iter().enumerate().rev().find(|(_, x)| **x != 0)?;
            return Some((
                first,
                j - WORDS_BLOCK + k * 8 + 7 - (x.leading_zeros() / 8) as usize,
            ));
        }
        j -= WORDS_BLOCK;
    }
    // The last difference lies in `first..j` (less than one block).
    let last = (first..j.max(first + 1)).rev().find(|&k| a[k] != b[k]);
    Some((first, last.unwrap_or(first)))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The AVX2 scan: 64 bytes per step (two 32-byte byte-compares, ANDed, one
    //! mask), then the differing step resolved from its 64-bit mask.
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
    };

    /// Bit `k` set where byte `k` of the 64 bytes at `i` differs.
    ///
    /// # Safety
    /// AVX2 must be present and `i + 64 <= a.len() == b.len()`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn diff_mask(a: &[u8], b: &[u8], i: usize) -> u64 {
        debug_assert!(i + 64 <= a.len() && a.len() == b.len());
        // SAFETY: the caller guarantees `i + 64 <= len` for both slices, so
        // the four unaligned 32-byte loads stay inside them.
        unsafe {
            let pa = a.as_ptr().add(i);
            let pb = b.as_ptr().add(i);
            let lo = _mm256_cmpeq_epi8(
                _mm256_loadu_si256(pa as *const __m256i),
                _mm256_loadu_si256(pb as *const __m256i),
            );
            let hi = _mm256_cmpeq_epi8(
                _mm256_loadu_si256(pa.add(32) as *const __m256i),
                _mm256_loadu_si256(pb.add(32) as *const __m256i),
            );
            let eq = (_mm256_movemask_epi8(lo) as u32 as u64)
                | ((_mm256_movemask_epi8(hi) as u32 as u64) << 32);
            !eq
        }
    }

    /// Whether any of the 64 bytes at `i` differ (cheaper than the mask).
    ///
    /// # Safety
    /// As [`diff_mask`].
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn differs(a: &[u8], b: &[u8], i: usize) -> bool {
        // SAFETY: as `diff_mask`, whose contract the caller upholds.
        unsafe {
            let pa = a.as_ptr().add(i);
            let pb = b.as_ptr().add(i);
            let lo = _mm256_cmpeq_epi8(
                _mm256_loadu_si256(pa as *const __m256i),
                _mm256_loadu_si256(pb as *const __m256i),
            );
            let hi = _mm256_cmpeq_epi8(
                _mm256_loadu_si256(pa.add(32) as *const __m256i),
                _mm256_loadu_si256(pb.add(32) as *const __m256i),
            );
            _mm256_movemask_epi8(_mm256_and_si256(lo, hi)) != -1
        }
    }

    /// [`super::diff_range`] with AVX2.
    ///
    /// # Safety
    /// AVX2 must be present; `a` and `b` must have the same length, at least 64.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn diff_range(a: &[u8], b: &[u8]) -> Option<(usize, usize)> {
        let n = a.len();
        debug_assert!(n >= 64 && b.len() == n);
        // Forward, in steps of 64; the last step is the final 64 bytes
        // (overlapping the one before when `n` is not a multiple of 64).
        let mut i = 0;
        let first = loop {
            let at = i.min(n - 64);
            // SAFETY: `at + 64 <= n`, and AVX2 is present (this function's contract).
            if unsafe { differs(a, b, at) } {
                // SAFETY: as above.
                let m = unsafe { diff_mask(a, b, at) };
                break at + m.trailing_zeros() as usize;
            }
            if at == n - 64 {
                return None;
            }
            i += 64;
        };
        // Backward from the end, in steps of 64, down to the first difference.
        let mut j = n;
        loop {
            let at = j.saturating_sub(64).max(first.min(n - 64));
            // SAFETY: `at <= n - 64`, and AVX2 is present.
            if unsafe { differs(a, b, at) } {
                // SAFETY: as above.
                let m = unsafe { diff_mask(a, b, at) };
                return Some((first, at + 63 - m.leading_zeros() as usize));
            }
            // `first` lies in every window at or below it, so a window without
            // a difference lies entirely above it.
            j = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flipped(a: &[u8], flips: &[(usize, u8)], extra: usize) -> Vec<u8> {
        let mut b = a.to_vec();
        for &(i, x) in flips {
            if let Some(v) = b.get_mut(i) {
                *v ^= x;
            }
        }
        b.extend(std::iter::repeat_n(9u8, extra));
        b
    }

    proptest! {
        #[test]
        fn diff_range_matches_a_byte_scan(
            a in proptest::collection::vec(0u8..4, 0..700),
            flips in proptest::collection::vec((0usize..700, 1u8..4), 0..4),
            extra in 0usize..3,
        ) {
            let b = flipped(&a, &flips, extra);
            let want = diff_range_reference(&a, &b);
            prop_assert_eq!(diff_range(&a, &b), want);
            prop_assert_eq!(diff_range_words(&a, &b), want);
            prop_assert_eq!(first_difference(&a, &b), want.map(|w| w.0));
            prop_assert_eq!(last_difference(&a, &b), want.map(|w| w.1));
        }

        #[test]
        fn diff_range_finds_single_differences_anywhere_in_a_page(
            len in 1usize..4200,
            at in proptest::collection::vec(0usize..4200, 1..3),
        ) {
            let a = vec![0u8; len];
            let flips: Vec<(usize, u8)> = at.iter().map(|&i| (i % len, 0x80)).collect();
            let b = flipped(&a, &flips, 0);
            let want = diff_range_reference(&a, &b);
            prop_assert_eq!(diff_range(&a, &b), want);
            prop_assert_eq!(diff_range_words(&a, &b), want);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_scan_agrees_with_the_reference_at_every_position() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        for len in [64usize, 65, 100, 127, 128, 129, 200, 4096] {
            let a = vec![5u8; len];
            // SAFETY: AVX2 was detected above; equal lengths of at least 64.
            assert_eq!(unsafe { avx2::diff_range(&a, &a) }, None);
            // Every pair of positions up to 70 apart on short strings; a
            // sample of them on the page-sized one.
            let step = if len > 256 { 29 } else { 1 };
            let mut b = a.clone();
            for i in (0..len).step_by(step) {
                for j in (i..len.min(i + 70)).step_by(step.min(3)) {
                    b[i] ^= 1;
                    b[j] ^= 2;
                    let want = diff_range_reference(&a, &b);
                    // SAFETY: as above.
                    let got = unsafe { avx2::diff_range(&a, &b) };
                    assert_eq!(got, want, "len {len}, flips at {i} and {j}");
                    assert_eq!(diff_range_words(&a, &b), want, "len {len}, {i}, {j}");
                    b[i] ^= 1;
                    b[j] ^= 2;
                }
            }
        }
    }
}

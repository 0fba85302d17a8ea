//! AVX2 apply kernels.
//!
//! The technique: AVX2 has no byte-granular masked store, so a mixed mask word
//! is applied as a read-blend-write of two 32-byte halves. Each 32-bit half of
//! the mask word is expanded to a 32-byte lane mask in four instructions:
//! broadcast the 32 bits to every dword (`vpbroadcastd`), `vpshufb` so byte `j`
//! holds mask byte `j / 8`, `vpand` with the repeating pattern
//! `1, 2, 4, .., 128` so byte `j` keeps only bit `j % 8`, and `vpcmpeqb`
//! against the same pattern, giving `0xff` where the bit is set. The payload
//! half and the destination half are then combined with `vpblendvb` and stored
//! back. Writing back unmasked destination bytes unchanged is invisible because
//! the kernel holds the destination exclusively (`&mut`). Halves that are all
//! zero are skipped and all-ones halves are stored without reading the
//! destination. The mask is scanned four words (one vector) at a time with
//! `vptest`: all-zero blocks are skipped, and a block of all-ones words starts a
//! run copied with one `memcpy`, so a full mask runs at `memcpy` speed. The
//! partial last word (length not a multiple of 64) is applied bit by bit, so
//! nothing past the end of the destination or payload is touched. Sparse
//! payloads use the same block skipping and run copying with a bit-by-bit loop
//! for mixed words (AVX2 has no byte expand).

use core::arch::x86_64::*;

/// Bytes covered by one mask word.
const W: usize = 64;

/// The end of the run of all-ones mask words that starts at `from`, looking no
/// further than `limit` (exclusive, at most `words.len()`).
///
/// # Safety
///
/// The CPU must support `avx2`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn ones_run_end(words: &[u64], from: usize, limit: usize) -> usize {
    debug_assert!(limit <= words.len());
    let mut end = from;
    while end + 4 <= limit {
        // SAFETY: end + 4 <= limit <= words.len(), so the 32 bytes are in `words`.
        let v = unsafe { _mm256_loadu_si256(words.as_ptr().add(end).cast()) };
        let eq = _mm256_movemask_epi8(_mm256_cmpeq_epi64(v, _mm256_set1_epi64x(-1))) as u32;
        if eq != u32::MAX {
            return end + eq.trailing_ones() as usize / 8;
        }
        end += 4;
    }
    while end < limit && words[end] == u64::MAX {
        end += 1;
    }
    end
}

/// Loads the eight mask words at `w`: whether any is non-zero, and whether all are all-ones.
///
/// # Safety
///
/// The CPU must support `avx2`; `w + 8 <= words.len()`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block8(words: &[u64], w: usize) -> (bool, bool) {
    // SAFETY: the caller guarantees w + 8 <= words.len(): both 32-byte loads are in `words`.
    let (a, b) = unsafe {
        let p = words.as_ptr().add(w);
        (
            _mm256_loadu_si256(p.cast()),
            _mm256_loadu_si256(p.add(4).cast()),
        )
    };
    let any = _mm256_or_si256(a, b);
    let all = _mm256_and_si256(a, b);
    let ones = _mm256_set1_epi64x(-1);
    let full = _mm256_movemask_epi8(_mm256_cmpeq_epi64(all, ones)) == -1;
    (_mm256_testz_si256(any, any) == 0, full)
}

/// A 32-byte lane mask: byte `j` is `0xff` where bit `j` of `bits` is set.
///
/// # Safety
///
/// The CPU must support `avx2`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn expand32(bits: u32) -> __m256i {
    let b = _mm256_set1_epi32(bits as i32);
    let shuf = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let x = _mm256_and_si256(_mm256_shuffle_epi8(b, shuf), sel);
    _mm256_cmpeq_epi8(x, sel)
}

/// Applies one 32-byte half: `dst[i] = src[i]` where bit `i` of `bits` is set.
///
/// # Safety
///
/// The CPU must support `avx2`; `src` must be readable and `dst` readable and
/// writable for 32 bytes, and the two must not overlap.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn half(dst: *mut u8, src: *const u8, bits: u32) {
    if bits == 0 {
        return;
    }
    // SAFETY: the caller guarantees 32 readable bytes at `src` and 32 readable and
    // writable bytes at `dst`; unaligned loads and stores are used throughout.
    unsafe {
        let s = _mm256_loadu_si256(src.cast());
        if bits == u32::MAX {
            _mm256_storeu_si256(dst.cast(), s);
            return;
        }
        let d = _mm256_loadu_si256(dst.cast());
        let r = _mm256_blendv_epi8(d, s, expand32(bits));
        _mm256_storeu_si256(dst.cast(), r);
    }
}

/// Dense payload under a mask: `dst[i] = src[i]` where bit `i` of `words` is set.
///
/// # Safety
///
/// The CPU must support `avx2`. The caller must have checked that
/// `src.len() == dst.len()`, that `words.len() == dst.len().div_ceil(64)` and
/// that no bit past `dst.len()` is set (see [`crate::mask::validate`]).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn masked(dst: &mut [u8], src: &[u8], words: &[u64]) {
    let len = dst.len();
    debug_assert_eq!(src.len(), len);
    debug_assert_eq!(words.len(), len.div_ceil(W));
    let full = len / W;
    let d = dst.as_mut_ptr();
    let s = src.as_ptr();
    let mut w = 0usize;
    while w + 8 <= full {
        // SAFETY: avx2 is enabled here and w + 8 <= full <= words.len().
        let (any, all_ones) = unsafe { block8(words, w) };
        if !any {
            w += 8;
            continue;
        }
        if all_ones {
            // SAFETY: avx2 is enabled here; full <= words.len().
            let end = unsafe { ones_run_end(words, w + 8, full) };
            // SAFETY: words w..end are full words, so bytes 64*w..64*end lie inside
            // both `src` and `dst` (equal lengths), which are distinct slices.
            unsafe { core::ptr::copy_nonoverlapping(s.add(w * W), d.add(w * W), (end - w) * W) };
            w = end;
            continue;
        }
        for (j, &word) in (w..).zip(&words[w..w + 8]) {
            // SAFETY: j < full, so bytes 64*j..64*j+64 lie inside `src` and `dst`.
            unsafe {
                half(d.add(j * W), s.add(j * W), word as u32);
                half(d.add(j * W + 32), s.add(j * W + 32), (word >> 32) as u32);
            }
        }
        w += 8;
    }
    while w < full {
        let word = words[w];
        // SAFETY: w < full, so bytes 64*w..64*w+64 lie inside `src` and `dst`.
        unsafe {
            half(d.add(w * W), s.add(w * W), word as u32);
            half(d.add(w * W + 32), s.add(w * W + 32), (word >> 32) as u32);
        }
        w += 1;
    }
    if full < words.len() {
        let base = full * W;
        let mut bits = words[full];
        while bits != 0 {
            let i = base + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            dst[i] = src[i];
        }
    }
}

/// Sparse payload: the `k`-th set bit of `words` receives `values[k]`.
///
/// # Safety
///
/// The CPU must support `avx2`. The caller must have checked that
/// `words.len() == dst.len().div_ceil(64)`, that no bit past `dst.len()` is set
/// and that `values.len()` equals the number of set bits.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn sparse(dst: &mut [u8], values: &[u8], words: &[u64]) {
    let len = dst.len();
    debug_assert_eq!(words.len(), len.div_ceil(W));
    let full = len / W;
    let mut k = 0usize;
    let mut w = 0usize;
    let scatter = |dst: &mut [u8], w: usize, word: u64, k: &mut usize| {
        let base = w * W;
        let mut bits = word;
        while bits != 0 {
            dst[base + bits.trailing_zeros() as usize] = values[*k];
            *k += 1;
            bits &= bits - 1;
        }
    };
    while w + 8 <= full {
        // SAFETY: avx2 is enabled here and w + 8 <= full <= words.len().
        let (any, all_ones) = unsafe { block8(words, w) };
        if !any {
            w += 8;
            continue;
        }
        if all_ones {
            // SAFETY: avx2 is enabled here; full <= words.len().
            let end = unsafe { ones_run_end(words, w + 8, full) };
            let n = (end - w) * W;
            dst[w * W..end * W].copy_from_slice(&values[k..k + n]);
            k += n;
            w = end;
            continue;
        }
        for (j, &word) in (w..).zip(&words[w..w + 8]) {
            scatter(dst, j, word, &mut k);
        }
        w += 8;
    }
    while w < words.len() {
        scatter(dst, w, words[w], &mut k);
        w += 1;
    }
}

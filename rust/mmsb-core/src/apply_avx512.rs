//! AVX-512 apply kernels (AVX-512F + AVX-512BW; AVX-512VBMI2 for sparse payloads).
//!
//! The technique: a mask word of the delta covers exactly 64 bytes of the range,
//! which is exactly one 512-bit vector, and AVX-512BW has byte-granular write
//! masks. So a mixed word is one unaligned load of the payload and one
//! `vmovdqu8 [dst]{k}` store (`_mm512_mask_storeu_epi8`) with the mask word as
//! the `k` register: no blend, no read of the destination by the program (the
//! cache still fetches the line). The mask itself is scanned eight words (one
//! vector) at a time: `vptestmq` finds the non-zero words of the block, an
//! all-zero block is skipped without touching the page, and a block of all-ones
//! words starts a *run* that is extended word by word and copied with one
//! `memcpy` (so a full mask moves data exactly as fast as `memcpy`, with the
//! same non-temporal strategy for large runs). The partial last word (a range
//! whose length is not a multiple of 64) uses a masked load as well as a masked
//! store; masked-off lanes are fault-suppressed, so nothing past the end of the
//! destination or payload is read or written. Sparse payloads (values packed,
//! the `k`-th set bit receives `values[k]`) load `popcount(word)` values with a
//! masked load and spread them to their lanes with `vpexpandb` (VBMI2,
//! `_mm512_maskz_expand_epi8`) before the same masked store; a masked load with
//! a `popcount`-long prefix mask reads exactly the bytes the word consumes.

use core::arch::x86_64::*;

/// Bytes covered by one mask word (and one 512-bit vector).
const W: usize = 64;

/// The end of the run of all-ones mask words that starts at `from`, looking no
/// further than `limit` (exclusive, at most `words.len()`).
///
/// # Safety
///
/// The CPU must support `avx512f`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn ones_run_end(words: &[u64], from: usize, limit: usize) -> usize {
    debug_assert!(limit <= words.len());
    let mut end = from;
    while end + 8 <= limit {
        // SAFETY: end + 8 <= limit <= words.len(), so the 64 bytes are in `words`.
        let v = unsafe { _mm512_loadu_si512(words.as_ptr().add(end).cast()) };
        let eq = _mm512_cmpeq_epi64_mask(v, _mm512_set1_epi64(-1));
        if eq != 0xff {
            return end + eq.trailing_ones() as usize;
        }
        end += 8;
    }
    while end < limit && words[end] == u64::MAX {
        end += 1;
    }
    end
}

/// Dense payload under a mask: `dst[i] = src[i]` where bit `i` of `words` is set.
///
/// # Safety
///
/// The CPU must support `avx512f` and `avx512bw`. The caller must have checked
/// that `src.len() == dst.len()`, that `words.len() == dst.len().div_ceil(64)`
/// and that no bit past `dst.len()` is set (see [`crate::mask::validate`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn masked(dst: &mut [u8], src: &[u8], words: &[u64]) {
    let len = dst.len();
    debug_assert_eq!(src.len(), len);
    debug_assert_eq!(words.len(), len.div_ceil(W));
    let full = len / W;
    let d = dst.as_mut_ptr();
    let s = src.as_ptr();
    let m = words.as_ptr();
    let mut w = 0usize;
    while w + 8 <= full {
        // SAFETY: w + 8 <= full <= words.len(), so the 64 bytes at m + w are in `words`.
        let v = unsafe { _mm512_loadu_si512(m.add(w).cast()) };
        let nz = _mm512_test_epi64_mask(v, v);
        if nz == 0 {
            w += 8;
            continue;
        }
        if _mm512_cmpeq_epi64_mask(v, _mm512_set1_epi64(-1)) == 0xff {
            // SAFETY: avx512f is enabled here; full <= words.len().
            let end = unsafe { ones_run_end(words, w + 8, full) };
            // SAFETY: words w..end are full words, so bytes 64*w..64*end lie inside
            // both `src` and `dst` (equal lengths), which are distinct slices.
            unsafe { core::ptr::copy_nonoverlapping(s.add(w * W), d.add(w * W), (end - w) * W) };
            w = end;
            continue;
        }
        let mut bits = nz;
        while bits != 0 {
            let j = w + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // SAFETY: j < full, so bytes 64*j..64*j+64 lie inside `src` and `dst`.
            unsafe {
                let x = _mm512_loadu_si512(s.add(j * W).cast());
                _mm512_mask_storeu_epi8(d.add(j * W).cast(), words[j], x);
            }
        }
        w += 8;
    }
    while w < full {
        let word = words[w];
        if word != 0 {
            // SAFETY: w < full, so bytes 64*w..64*w+64 lie inside `src` and `dst`.
            unsafe {
                let x = _mm512_loadu_si512(s.add(w * W).cast());
                _mm512_mask_storeu_epi8(d.add(w * W).cast(), word, x);
            }
        }
        w += 1;
    }
    let rest = len - full * W;
    if rest != 0 {
        let word = words[full] & ((1u64 << rest) - 1);
        if word != 0 {
            // SAFETY: only lanes whose bit is set in `word` are accessed (masked-off
            // lanes are fault-suppressed), and `word` has bits below `rest` only, so
            // every accessed byte 64*full + i (i < rest) lies inside `src` and `dst`.
            unsafe {
                let x = _mm512_maskz_loadu_epi8(word, s.add(full * W).cast());
                _mm512_mask_storeu_epi8(d.add(full * W).cast(), word, x);
            }
        }
    }
}

/// Sparse payload: the `k`-th set bit of `words` receives `values[k]`.
///
/// # Safety
///
/// The CPU must support `avx512f`, `avx512bw` and `avx512vbmi2`. The caller must
/// have checked that `words.len() == dst.len().div_ceil(64)`, that no bit past
/// `dst.len()` is set and that `values.len()` equals the number of set bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt,bmi2")]
pub(crate) unsafe fn sparse(dst: &mut [u8], values: &[u8], words: &[u64]) {
    let len = dst.len();
    debug_assert_eq!(words.len(), len.div_ceil(W));
    let full = len / W;
    let d = dst.as_mut_ptr();
    let m = words.as_ptr();
    let vp = values.as_ptr();
    // Values consumed so far. Invariant: k + popcount(words[w..]) == values.len().
    let mut k = 0usize;
    let mut w = 0usize;
    while w + 8 <= full {
        // SAFETY: w + 8 <= full <= words.len(), so the 64 bytes at m + w are in `words`.
        let v = unsafe { _mm512_loadu_si512(m.add(w).cast()) };
        let nz = _mm512_test_epi64_mask(v, v);
        if nz == 0 {
            w += 8;
            continue;
        }
        if _mm512_cmpeq_epi64_mask(v, _mm512_set1_epi64(-1)) == 0xff {
            // SAFETY: avx512f is enabled here; full <= words.len().
            let end = unsafe { ones_run_end(words, w + 8, full) };
            let n = (end - w) * W;
            // SAFETY: words w..end are all ones, so they consume n values from k, and
            // k + n <= values.len() by the invariant; bytes 64*w..64*end are inside `dst`.
            unsafe { core::ptr::copy_nonoverlapping(vp.add(k), d.add(w * W), n) };
            k += n;
            w = end;
            continue;
        }
        let mut bits = nz;
        while bits != 0 {
            let j = w + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // SAFETY: j < full, so the 64 bytes at 64*j are inside `dst`; see expand_one.
            unsafe { expand_one(d.add(j * W), vp.add(k), words[j]) };
            k += words[j].count_ones() as usize;
        }
        w += 8;
    }
    while w < full {
        let word = words[w];
        if word != 0 {
            // SAFETY: w < full, so the 64 bytes at 64*w are inside `dst`; see expand_one.
            unsafe { expand_one(d.add(w * W), vp.add(k), word) };
            k += word.count_ones() as usize;
        }
        w += 1;
    }
    let rest = len - full * W;
    if rest != 0 {
        let word = words[full] & ((1u64 << rest) - 1);
        if word != 0 {
            // SAFETY: expand_one writes only lanes set in `word`, all below `rest`,
            // so inside `dst`; it reads popcount(word) values from k, which remain.
            unsafe { expand_one(d.add(full * W), vp.add(k), word) };
        }
    }
}

/// Writes `popcount(word)` bytes from `vals` to the lanes of `dst` set in `word`.
///
/// # Safety
///
/// The CPU must support `avx512f`, `avx512bw` and `avx512vbmi2`; `vals` must be
/// readable for `popcount(word)` bytes and `dst + i` writable for every set bit `i`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt,bmi2")]
unsafe fn expand_one(dst: *mut u8, vals: *const u8, word: u64) {
    let n = word.count_ones();
    let prefix = _bzhi_u64(u64::MAX, n);
    // SAFETY: the masked load reads only the first n bytes at `vals` (the other
    // lanes are fault-suppressed), which the caller guarantees are readable; the
    // masked store writes only the lanes set in `word`, which the caller allows.
    unsafe {
        let x = _mm512_maskz_loadu_epi8(prefix, vals.cast());
        let y = _mm512_maskz_expand_epi8(word, x);
        _mm512_mask_storeu_epi8(dst.cast(), word, y);
    }
}

//! Zeroing of small pages, specialised for slots.
//!
//! Every small page handed out zeroed is cleared here, so this is most of
//! the cost of a 1 KiB or 4 KiB allocation. A slot is 64-byte aligned and a
//! multiple of 64 bytes, so a page of `len` bytes can be cleared in whole
//! 64-byte lines (`len` rounded up stays inside the slot): aligned stores in
//! a fixed loop, no head or tail handling, none of `memset`'s dispatch on
//! size (glibc's switches to `rep stosb` above 2 KiB, which is slower than
//! vector stores for a 4 KiB page).
//!
//! * Pages of up to two lines (128 bytes) take inline 16-byte stores (the
//!   baseline x86-64 vector width; for them any call costs more than the
//!   stores).
//! * Larger pages call, through a function pointer set on first use, one of
//!   two store loops compiled for wider vectors: 64-byte stores where the CPU
//!   has AVX-512F and runs them at full clock (AMD, and Intel from Sapphire
//!   Rapids on: glibc's rule), else 32-byte stores where it has AVX2, else
//!   `memset`. The environment variable `MMSB_ALLOC_ZERO` (`avx2`, `memset`)
//!   caps the choice, for measurement.
//!
//! Measured (`mmsb bench alloc`, `docs/allocator.md`): a 4 KiB allocate+free
//! pair 10% faster than with `memset`, 1 KiB and 64 B unchanged.
//!
//! The store loops use volatile stores only so that the compiler keeps them:
//! it would otherwise recognise a loop of zero stores and turn it back into a
//! `memset` call. A volatile store of a vector is still one store instruction.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Zeroes the first `len` bytes of a slot, in whole 64-byte lines.
///
/// `ptr` must be a slot handed to the caller (owned, 64-byte aligned, at
/// least `len` rounded up to 64 bytes long): slot sizes are multiples of 64.
#[inline(always)]
pub(crate) fn zero_slot(ptr: NonNull<u8>, len: usize) {
    let lines = len.div_ceil(64);
    if lines <= 2 {
        zero_lines_inline(ptr.as_ptr(), lines);
    } else {
        zero_lines_wide(ptr.as_ptr(), lines);
    }
}

/// Zeroes `lines` 64-byte lines at `p` with inline 16-byte stores.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn zero_lines_inline(p: *mut u8, lines: usize) {
    use std::arch::x86_64::{__m128i, _mm_setzero_si128};
    // SAFETY: SSE2 is part of the x86-64 baseline.
    let z: __m128i = unsafe { _mm_setzero_si128() };
    let v = p.cast::<__m128i>();
    for i in 0..lines {
        // SAFETY: the caller owns `lines * 64` bytes at `p`, 64-byte aligned
        // (so every 16-byte store is aligned and in bounds).
        unsafe {
            v.add(4 * i).write_volatile(z);
            v.add(4 * i + 1).write_volatile(z);
            v.add(4 * i + 2).write_volatile(z);
            v.add(4 * i + 3).write_volatile(z);
        }
    }
}

/// Zeroes `lines` 64-byte lines at `p` (other architectures: `memset`).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn zero_lines_inline(p: *mut u8, lines: usize) {
    // SAFETY: the caller owns `lines * 64` bytes at `p`.
    unsafe { p.write_bytes(0, lines * 64) };
}

/// Which store loop clears pages above two lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    /// `memset`.
    Memset = 1,
    /// 32-byte AVX2 stores.
    Avx2 = 2,
    /// 64-byte AVX-512F stores.
    Avx512 = 3,
}

/// A store loop for pages above two lines: `(p, lines)` zeroes `lines`
/// 64-byte lines at `p`.
///
/// Safety contract of every such function: the CPU has the features the loop
/// was compiled for, and the caller owns `lines * 64` bytes at `p`, which is
/// 64-byte aligned.
type ZeroFn = unsafe fn(*mut u8, usize);

/// The store loop of this process: at first [`detect_and_zero`], which picks
/// the loop, stores it here and runs it. Called through this pointer, the
/// loop costs the allocation fast path what a `memset` call did (a load and
/// an indirect call), and keeps that path small enough to be inlined.
static ZERO_WIDE: AtomicPtr<()> = AtomicPtr::new(detect_and_zero as ZeroFn as *mut ());

/// Zeroes `lines` (> 2) 64-byte lines at `p` with the process's store loop.
#[inline(always)]
fn zero_lines_wide(p: *mut u8, lines: usize) {
    // SAFETY: ZERO_WIDE only ever holds `ZeroFn` values (its initial value
    // and what `detect_and_zero` stores), cast to a data pointer and back.
    let f = unsafe { std::mem::transmute::<*mut (), ZeroFn>(ZERO_WIDE.load(Ordering::Relaxed)) };
    // SAFETY: every stored loop runs on this CPU (`zero_fn` checks), and the
    // caller of `zero_slot` owns `lines * 64` bytes at `p`, 64-byte aligned.
    unsafe { f(p, lines) }
}

/// First use: picks the store loop ([`best_level`], capped by
/// `MMSB_ALLOC_ZERO`), stores it in [`ZERO_WIDE`] and runs it.
///
/// # Safety
/// The [`ZeroFn`] contract on `p` and `lines`.
unsafe fn detect_and_zero(p: *mut u8, lines: usize) {
    let cap = match std::env::var("MMSB_ALLOC_ZERO").as_deref() {
        Ok("memset") => Level::Memset,
        Ok("avx2") => Level::Avx2,
        _ => Level::Avx512,
    };
    let f = zero_fn(best_level().min(cap));
    ZERO_WIDE.store(f as *mut (), Ordering::Relaxed);
    // SAFETY: `zero_fn` returns a loop this CPU runs; the caller's contract.
    unsafe { f(p, lines) }
}

/// The store loop for this CPU: the widest it runs at full clock.
pub(crate) fn best_level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && zmm_at_full_clock() {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Memset
}

/// Whether 512-bit stores run without lowering the core's clock. glibc's
/// rule for its own `memset`: Intel cores with AVX-512 but without AVX-VNNI
/// (Skylake-SP to Ice Lake-SP) slow down for 512-bit instructions, so there
/// 32-byte stores are used (at the same store bandwidth from Ice Lake on:
/// two 32-byte stores or one 64-byte store a cycle); AMD cores and Intel
/// cores with AVX-VNNI (Sapphire Rapids on) do not.
#[cfg(target_arch = "x86_64")]
fn zmm_at_full_clock() -> bool {
    let v = std::arch::x86_64::__cpuid(0);
    let amd = (v.ebx, v.edx, v.ecx) == (0x6874_7541, 0x6974_6E65, 0x444D_4163); // "AuthenticAMD"
    amd || is_x86_feature_detected!("avxvnni")
}

/// Whether this CPU can run the store loop of `level`.
pub(crate) fn cpu_runs(level: Level) -> bool {
    match level {
        Level::Memset => true,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => is_x86_feature_detected!("avx2"),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => is_x86_feature_detected!("avx512f"),
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

/// The store loop of `level`, if this CPU runs it, else `memset`'s.
pub(crate) fn zero_fn(level: Level) -> ZeroFn {
    if !cpu_runs(level) {
        return zero_lines_memset;
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => zero_lines_avx512,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => zero_lines_avx2,
        _ => zero_lines_memset,
    }
}

/// Zeroes `lines` 64-byte lines at `p` with `memset`.
///
/// # Safety
/// The caller owns `lines * 64` bytes at `p`.
unsafe fn zero_lines_memset(p: *mut u8, lines: usize) {
    // SAFETY: the caller's contract.
    unsafe { p.write_bytes(0, lines * 64) };
}

/// Zeroes `lines` 64-byte lines at `p` with aligned 64-byte stores.
///
/// # Safety
/// The CPU has AVX-512F; the caller owns `lines * 64` bytes at `p`, which is
/// 64-byte aligned.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn zero_lines_avx512(p: *mut u8, lines: usize) {
    use std::arch::x86_64::{__m512i, _mm512_setzero_si512};
    let z = _mm512_setzero_si512();
    let v = p.cast::<__m512i>();
    for i in 0..lines {
        // SAFETY: line `i` is inside the caller's `lines * 64` bytes, and
        // 64-byte aligned like `p`.
        unsafe { v.add(i).write_volatile(z) };
    }
}

/// Zeroes `lines` 64-byte lines at `p` with aligned 32-byte stores.
///
/// # Safety
/// The CPU has AVX2; the caller owns `lines * 64` bytes at `p`, which is
/// 64-byte aligned.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn zero_lines_avx2(p: *mut u8, lines: usize) {
    use std::arch::x86_64::{__m256i, _mm256_setzero_si256};
    let z = _mm256_setzero_si256();
    let v = p.cast::<__m256i>();
    for i in 0..lines {
        // SAFETY: both halves of line `i` are inside the caller's
        // `lines * 64` bytes, 32-byte aligned.
        unsafe {
            v.add(2 * i).write_volatile(z);
            v.add(2 * i + 1).write_volatile(z);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 64-byte aligned line: a `Vec<Line>` is an aligned buffer whose
    /// first and last lines serve as guards.
    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);

    fn levels() -> Vec<Level> {
        [Level::Memset, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|&l| cpu_runs(l))
            .collect()
    }

    #[test]
    fn every_store_loop_zeroes_exactly_its_lines() {
        // Oracle: a plain byte-wise comparison of the buffer against the
        // expected image (zeroes in the lines asked for, the fill elsewhere).
        for level in levels() {
            let f = zero_fn(level);
            for lines in 0..=70usize {
                let mut buf = vec![Line([0xA5; 64]); lines + 2];
                // SAFETY: the buffer holds lines + 2 aligned lines; the loop
                // gets the `lines` between the two guards, owned here, and
                // `zero_fn` returned a loop this CPU runs.
                unsafe { f(buf.as_mut_ptr().add(1).cast::<u8>(), lines) };
                for (i, l) in buf.iter().enumerate() {
                    let want = if i >= 1 && i <= lines { 0 } else { 0xA5 };
                    assert!(
                        l.0.iter().all(|&b| b == want),
                        "{level:?}, {lines} lines: line {i} wrong"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_slot_clears_len_rounded_up_to_lines_and_nothing_more() {
        // Through the process's own dispatch (inline stores up to two lines,
        // then the picked loop), for every slot length up to 8 KiB.
        for len in (1..=8192usize)
            .step_by(61)
            .chain([64, 128, 129, 1024, 4096])
        {
            let lines = len.div_ceil(64);
            let mut buf = vec![Line([0x5A; 64]); lines + 2];
            // SAFETY: as above; `lines` whole lines lie between the guards.
            let p = unsafe { buf.as_mut_ptr().add(1).cast::<u8>() };
            zero_slot(NonNull::new(p).unwrap(), len);
            for (i, l) in buf.iter().enumerate() {
                let want = if i >= 1 && i <= lines { 0 } else { 0x5A };
                assert!(l.0.iter().all(|&b| b == want), "len {len}: line {i}");
            }
        }
    }

    #[test]
    fn the_level_never_exceeds_what_the_cpu_has() {
        assert!(cpu_runs(best_level()));
        // A level the CPU lacks falls back to memset (no illegal instruction).
        let f = zero_fn(Level::Avx512);
        let mut buf = vec![Line([1; 64]); 4];
        // SAFETY: four owned aligned lines; `zero_fn` checked the CPU.
        unsafe { f(buf.as_mut_ptr().cast::<u8>(), 4) };
        assert!(buf.iter().all(|l| l.0 == [0; 64]));
    }
}

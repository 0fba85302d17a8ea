//! Semiring kernels over vectors: folds and accumulation.
//!
//! * [`fold_add`]: `x₀ ⊕ x₁ ⊕ … ⊕ xₙ₋₁` (zero for an empty vector).
//! * [`fold_mul`]: `x₀ ⊗ x₁ ⊗ … ⊗ xₙ₋₁` (one for an empty vector).
//! * [`accumulate`]: `c[i] = c[i] ⊕ t[i]`, elementwise.
//! * [`accumulate_masked`]: the masked form `C<M> = C ⊙ T` of GraphBLAS, with
//!   `⊙ = ⊕`: `c[i] = c[i] ⊕ t[i]` where bit `i` of the mask is set (the
//!   [`crate::mask`] layout: bit `i % 64` of word `i / 64`), `c[i]` unchanged
//!   elsewhere.
//!
//! Each has a `*_reference` version: a plain sequential loop, obviously right,
//! the oracle for tests. The fast versions are the same generic code written
//! so the compiler can vectorise it: a fold keeps [`lanes`] independent
//! accumulators (lane `j` of `L` folds elements `j, j + L, …`; see [`lanes`]), combines them in
//! lane order and then folds the tail; accumulation is a straight elementwise
//! loop, and the masked form skips all-zero mask words, runs all-one words as
//! a dense block and blends the rest (in place with AVX-512's masked stores,
//! elsewhere into a scratch block copied back whole). That code is compiled three times: for
//! the baseline target ([`Kernel::Scalar`]), with AVX2 and with AVX-512
//! (`#[target_feature]`), and [`best`] picks one at run time as the
//! delta-apply kernels do. Measured, AVX-512 pays only for the masked form
//! (one masked store per blend); for folds and plain accumulation LLVM's
//! AVX-512 code was up to 4x slower than its AVX2 code for some element
//! types (i64 sums stayed scalar), so [`Kernel::Avx512`] runs the AVX2
//! instance of those. Since every fast version uses the same evaluation
//! order, their results are bit-identical on every CPU; they differ from the
//! reference only where `⊕` or `⊗` rounds (float sums and products), within
//! the usual summation error bound. (The lane count is [`LANE_BYTES`] divided
//! by the element size: 32 lanes for f64, 64 for f32.)
//!
//! A semiring whose [`Properties`](crate::semiring::Properties) say `⊗` (or
//! `⊕`) is not commutative gets the sequential fold for it: the lanes reorder
//! operands.
//!
//! **Early exit.** A fold whose semiring has a terminal value of `⊕` (min-plus:
//! −∞, or-and: true) checks it once per block of [`BLOCK`] elements and stops
//! there; an exact semiring's [`fold_mul`] stops likewise at the annihilating
//! zero. Terminal values absorb, so the result is the same as without the exit.

use crate::apply::Kernel;
use crate::error::{Error, Result};
use crate::mask;
use crate::semiring::Semiring;

/// Bytes of independent accumulators a fast fold keeps: `LANE_BYTES / size`
/// lanes of an element of `size` bytes (32 for f64, 64 for f32, 256 for u8).
/// The evaluation order of float folds depends on it (and on nothing else).
pub const LANE_BYTES: usize = 256;

/// The number of lanes a fast fold uses for elements of type `E`.
pub const fn lanes<E>() -> usize {
    let size = std::mem::size_of::<E>();
    if size == 0 || size >= LANE_BYTES {
        1
    } else {
        LANE_BYTES / size
    }
}
/// Elements between two early-exit checks of a fold.
pub const BLOCK: usize = 4096;

// ---------------------------------------------------------------- reference

/// `x₀ ⊕ … ⊕ xₙ₋₁`, left to right, starting from zero. The oracle.
pub fn fold_add_reference<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    x.iter().fold(s.zero(), |acc, &v| s.add(acc, v))
}

/// `x₀ ⊗ … ⊗ xₙ₋₁`, left to right, starting from one. The oracle.
pub fn fold_mul_reference<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    x.iter().fold(s.one(), |acc, &v| s.mul(acc, v))
}

/// `c[i] = c[i] ⊕ t[i]`, one element at a time. The oracle.
pub fn accumulate_reference<S: Semiring>(s: &S, c: &mut [S::Elem], t: &[S::Elem]) -> Result<()> {
    check_lengths(c.len(), t.len())?;
    for (ci, &ti) in c.iter_mut().zip(t) {
        *ci = s.add(*ci, ti);
    }
    Ok(())
}

/// `C<M> = C ⊕ T`, one element at a time. The oracle.
pub fn accumulate_masked_reference<S: Semiring>(
    s: &S,
    c: &mut [S::Elem],
    t: &[S::Elem],
    words: &[u64],
) -> Result<()> {
    check_lengths(c.len(), t.len())?;
    mask::validate(words, c.len() as u64)?;
    for (i, (ci, &ti)) in c.iter_mut().zip(t).enumerate() {
        if mask::bit(words, i) {
            *ci = s.add(*ci, ti);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- checks

fn check_lengths(c: usize, t: usize) -> Result<()> {
    if c != t {
        return Err(Error::invalid(format!(
            "accumulate needs vectors of equal length, got {c} and {t}"
        )));
    }
    Ok(())
}

fn unavailable(kernel: Kernel) -> Error {
    Error::invalid(format!(
        "the {} semiring kernel is not available on this CPU",
        kernel.name()
    ))
}

// ---------------------------------------------------------------- generic bodies

/// Folds `x` with `op` in [`lanes`] lanes starting from `init`; with `hit`
/// set, stops early and returns it when `stop` holds for a lane at a block
/// boundary (`hit` absorbs `op`, so the result is the same).
#[inline(always)]
fn fold_lanes<S: Semiring>(
    s: &S,
    x: &[S::Elem],
    init: S::Elem,
    op: impl Fn(&S, S::Elem, S::Elem) -> S::Elem,
    stop: impl Fn(&S, S::Elem) -> bool,
    hit: Option<S::Elem>,
) -> S::Elem {
    // One instance per lane count; the match is resolved at compile time.
    match lanes::<S::Elem>() {
        256 => fold_n::<S, 256>(s, x, init, op, stop, hit),
        128 => fold_n::<S, 128>(s, x, init, op, stop, hit),
        64 => fold_n::<S, 64>(s, x, init, op, stop, hit),
        32 => fold_n::<S, 32>(s, x, init, op, stop, hit),
        16 => fold_n::<S, 16>(s, x, init, op, stop, hit),
        _ => fold_n::<S, 1>(s, x, init, op, stop, hit),
    }
}

#[inline(always)]
fn fold_n<S: Semiring, const LANES: usize>(
    s: &S,
    x: &[S::Elem],
    init: S::Elem,
    op: impl Fn(&S, S::Elem, S::Elem) -> S::Elem,
    stop: impl Fn(&S, S::Elem) -> bool,
    hit: Option<S::Elem>,
) -> S::Elem {
    let mut lanes = [init; LANES];
    let combine = |lanes: &[S::Elem; LANES]| lanes.iter().fold(init, |a, &b| op(s, a, b));
    let body_len = x.len() - x.len() % LANES;
    let (body, tail) = x.split_at(body_len);
    for block in body.chunks(BLOCK) {
        for chunk in block.chunks_exact(LANES) {
            for j in 0..LANES {
                lanes[j] = op(s, lanes[j], chunk[j]);
            }
        }
        // A lane at the absorbing value makes the whole fold that value,
        // whatever the order; testing the lanes (not their combination)
        // keeps the check vectorised.
        if let Some(h) = hit {
            if lanes.iter().any(|&l| stop(s, l)) {
                return h;
            }
        }
    }
    tail.iter().fold(combine(&lanes), |a, &b| op(s, a, b))
}

#[inline(always)]
fn fold_add_body<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    if !s.properties().commutative_add {
        return fold_add_reference(s, x);
    }
    fold_lanes(s, x, s.zero(), S::add, S::is_terminal, s.terminal())
}

#[inline(always)]
fn fold_mul_body<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    if !s.properties().commutative_mul {
        return fold_mul_reference(s, x);
    }
    let zero = s.zero();
    let hit = s.properties().exact.then_some(zero);
    fold_lanes(s, x, s.one(), S::mul, move |_, r| r == zero, hit)
}

#[inline(always)]
fn accumulate_body<S: Semiring>(s: &S, c: &mut [S::Elem], t: &[S::Elem]) {
    for (ci, &ti) in c.iter_mut().zip(t) {
        *ci = s.add(*ci, ti);
    }
}

/// `IN_PLACE`: blend mixed mask words in place (AVX-512 turns the select into
/// one masked store, its fastest form); otherwise blend into a scratch block
/// copied back whole, since in place the compiler emits a masked store that
/// is microcoded and slow on AVX2 and a branchy loop on the baseline target.
#[inline(always)]
fn accumulate_masked_body<S: Semiring, const IN_PLACE: bool>(
    s: &S,
    c: &mut [S::Elem],
    t: &[S::Elem],
    words: &[u64],
) {
    let mut tmp = [s.zero(); 64];
    for ((cw, tw), &w) in c.chunks_mut(64).zip(t.chunks(64)).zip(words) {
        if w == 0 {
            continue;
        }
        if w == u64::MAX {
            accumulate_body(s, cw, tw);
            continue;
        }
        if IN_PLACE {
            for (j, (ci, &ti)) in cw.iter_mut().zip(tw).enumerate() {
                let v = s.add(*ci, ti);
                *ci = if (w >> j) & 1 != 0 { v } else { *ci };
            }
        } else {
            let n = cw.len();
            for (j, ((o, &ci), &ti)) in tmp[..n].iter_mut().zip(cw.iter()).zip(tw).enumerate() {
                let v = s.add(ci, ti);
                *o = if (w >> j) & 1 != 0 { v } else { ci };
            }
            cw.copy_from_slice(&tmp[..n]);
        }
    }
}

/// The portable instance of the masked body.
#[inline(always)]
fn accumulate_masked_portable<S: Semiring>(s: &S, c: &mut [S::Elem], t: &[S::Elem], words: &[u64]) {
    accumulate_masked_body::<S, false>(s, c, t, words)
}

// ---------------------------------------------------------------- ISA instances

/// The bodies compiled with AVX2 / AVX-512 enabled. Each function is safe to
/// call only on a CPU with the named features (the callers check
/// [`Kernel::is_available`] first).
#[cfg(target_arch = "x86_64")]
mod isa {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn fold_add_avx2<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
        fold_add_body(s, x)
    }
    #[target_feature(enable = "avx2")]
    pub(super) fn fold_mul_avx2<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
        fold_mul_body(s, x)
    }
    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate_avx2<S: Semiring>(s: &S, c: &mut [S::Elem], t: &[S::Elem]) {
        accumulate_body(s, c, t)
    }
    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate_masked_avx2<S: Semiring>(
        s: &S,
        c: &mut [S::Elem],
        t: &[S::Elem],
        words: &[u64],
    ) {
        accumulate_masked_body::<S, false>(s, c, t, words)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn accumulate_masked_avx512<S: Semiring>(
        s: &S,
        c: &mut [S::Elem],
        t: &[S::Elem],
        words: &[u64],
    ) {
        accumulate_masked_body::<S, true>(s, c, t, words)
    }
}

/// Dispatches one operation to the instance for `kernel` (already checked available).
macro_rules! dispatch {
    ($kernel:expr, $body:ident, $avx2:ident, $avx512:ident, ($($arg:expr),*)) => {
        match $kernel {
            Kernel::Scalar => $body($($arg),*),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                // SAFETY: every caller checked `is_available(Kernel::Avx2)`, so
                // the CPU has the AVX2 instructions the instance was compiled for.
                unsafe { isa::$avx2($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                // SAFETY: every caller checked `is_available(Kernel::Avx512)`
                // (AVX-512F, BW and VL), the features the instance was compiled for.
                unsafe { isa::$avx512($($arg),*) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => $body($($arg),*),
        }
    };
}

/// Whether `kernel` can run the semiring kernels on this CPU (the AVX-512
/// instance also needs AVX-512VL).
pub fn is_available(kernel: Kernel) -> bool {
    match kernel {
        Kernel::Avx512 => kernel.is_available() && has_avx512vl(),
        k => k.is_available(),
    }
}

/// The fastest kernel [`is_available`] says this CPU runs.
pub fn best() -> Kernel {
    static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| {
        Kernel::ALL
            .iter()
            .rev()
            .copied()
            .find(|k| is_available(*k))
            .unwrap_or(Kernel::Scalar)
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx512vl() -> bool {
    is_x86_feature_detected!("avx512vl")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512vl() -> bool {
    false
}

fn check(kernel: Kernel) -> Result<()> {
    if is_available(kernel) {
        Ok(())
    } else {
        Err(unavailable(kernel))
    }
}

// ---------------------------------------------------------------- public API

/// [`fold_add`] with a chosen kernel; an error if the CPU lacks it.
pub fn fold_add_with<S: Semiring>(kernel: Kernel, s: &S, x: &[S::Elem]) -> Result<S::Elem> {
    check(kernel)?;
    Ok(dispatch!(
        kernel,
        fold_add_body,
        fold_add_avx2,
        fold_add_avx2,
        (s, x)
    ))
}

/// [`fold_mul`] with a chosen kernel; an error if the CPU lacks it.
pub fn fold_mul_with<S: Semiring>(kernel: Kernel, s: &S, x: &[S::Elem]) -> Result<S::Elem> {
    check(kernel)?;
    Ok(dispatch!(
        kernel,
        fold_mul_body,
        fold_mul_avx2,
        fold_mul_avx2,
        (s, x)
    ))
}

/// [`accumulate`] with a chosen kernel; an error if the CPU lacks it.
pub fn accumulate_with<S: Semiring>(
    kernel: Kernel,
    s: &S,
    c: &mut [S::Elem],
    t: &[S::Elem],
) -> Result<()> {
    check(kernel)?;
    check_lengths(c.len(), t.len())?;
    dispatch!(
        kernel,
        accumulate_body,
        accumulate_avx2,
        accumulate_avx2,
        (s, c, t)
    );
    Ok(())
}

/// [`accumulate_masked`] with a chosen kernel; an error if the CPU lacks it.
pub fn accumulate_masked_with<S: Semiring>(
    kernel: Kernel,
    s: &S,
    c: &mut [S::Elem],
    t: &[S::Elem],
    words: &[u64],
) -> Result<()> {
    check(kernel)?;
    check_lengths(c.len(), t.len())?;
    mask::validate(words, c.len() as u64)?;
    dispatch!(
        kernel,
        accumulate_masked_portable,
        accumulate_masked_avx2,
        accumulate_masked_avx512,
        (s, c, t, words)
    );
    Ok(())
}

/// `x₀ ⊕ … ⊕ xₙ₋₁` (zero for an empty vector), on the fastest kernel.
pub fn fold_add<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    dispatch!(best(), fold_add_body, fold_add_avx2, fold_add_avx2, (s, x))
}

/// `x₀ ⊗ … ⊗ xₙ₋₁` (one for an empty vector), on the fastest kernel.
pub fn fold_mul<S: Semiring>(s: &S, x: &[S::Elem]) -> S::Elem {
    dispatch!(best(), fold_mul_body, fold_mul_avx2, fold_mul_avx2, (s, x))
}

/// `c[i] = c[i] ⊕ t[i]` for every `i`; an error if the lengths differ.
pub fn accumulate<S: Semiring>(s: &S, c: &mut [S::Elem], t: &[S::Elem]) -> Result<()> {
    accumulate_with(best(), s, c, t)
}

/// `C<M> = C ⊕ T`: `c[i] = c[i] ⊕ t[i]` where mask bit `i` is set; an error if
/// the lengths differ or the mask does not have `ceil(len / 64)` words with no
/// bits past the end.
pub fn accumulate_masked<S: Semiring>(
    s: &S,
    c: &mut [S::Elem],
    t: &[S::Elem],
    words: &[u64],
) -> Result<()> {
    accumulate_masked_with(best(), s, c, t, words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semiring::{MinPlus, OrAnd, PlusTimes};

    #[test]
    fn empty_folds_are_the_identities() {
        let s = MinPlus::<f64>::new();
        assert_eq!(fold_add(&s, &[]), f64::INFINITY);
        assert_eq!(fold_mul(&s, &[]), 0.0);
    }

    #[test]
    fn folds_stop_at_the_terminal_value_with_the_same_result() {
        let s = OrAnd::<u8>::new();
        let mut x = vec![0u8; 3 * BLOCK + 5];
        x[10] = 9;
        assert_eq!(fold_add(&s, &x), 1);
        assert_eq!(fold_add_reference(&s, &x), 1);
        let s = PlusTimes::<i64>::new();
        let mut y = vec![3i64; 2 * BLOCK];
        y[7] = 0;
        assert_eq!(fold_mul(&s, &y), 0);
    }

    #[test]
    fn mismatched_lengths_and_bad_masks_are_invalid() {
        let s = PlusTimes::<i32>::new();
        let mut c = vec![0i32; 70];
        assert!(accumulate(&s, &mut c, &[1; 69]).is_err());
        assert!(accumulate_masked(&s, &mut c, &[1; 70], &[0]).is_err());
        assert!(accumulate_masked(&s, &mut c, &[1; 70], &[0, 1 << 6]).is_err());
        assert!(accumulate_masked(&s, &mut c, &[1; 70], &[1, 1 << 5]).is_ok());
        assert_eq!((c[0], c[1], c[69]), (1, 0, 1));
    }
}

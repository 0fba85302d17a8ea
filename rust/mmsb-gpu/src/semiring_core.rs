//! The semirings the GPU kernels implement, mapped onto mmsb-core's.
//!
//! The device kernels (`kernels/semiring.cu`) are named by a [`Semiring`]
//! and an [`ElemType`]; the CPU side (the reference the GPU checks compare
//! against, and the path every GPU entry point falls back to) is
//! mmsb-core's semiring layer: [`Semiring::kind`] and [`ElemType::dtype`] map
//! the pair to mmsb-core's stable codes ([`SemiringKind`] 1–6, [`DType`]), and
//! [`fold_add`], [`fold_mul`], [`accumulate`] and [`spmv`] run
//! `mmsb_core::semiring_kernels` and the core semirings' `⊕` / `⊗` through
//! [`mmsb_core::with_semiring!`]. A fallback therefore gives exactly what a
//! CPU-only run of mmsb-core gives.
//!
//! | semiring | `⊕` | zero | `⊗` | one | element types with kernels |
//! |---|---|---|---|---|---|
//! | [`Semiring::PlusTimes`] | `a + b` | 0 | `a * b` | 1 | f32 f64 i32 i64 u8 |
//! | [`Semiring::MinPlus`] | `min(a, b)` | +inf | `a + b`, +inf absorbing | 0 | f32 f64 i32 i64 u8 |
//! | [`Semiring::MaxPlus`] | `max(a, b)` | -inf | `a + b`, -inf absorbing | 0 | f32 f64 i32 i64 |
//! | [`Semiring::OrAnd`] | `a≠0 ∨ b≠0` | 0 | `a≠0 ∧ b≠0` | 1 | u8 |
//!
//! The GPU side keeps to the pairs mmsb-core defines ([`Semiring::supports`]):
//! mmsb-core has no max-plus over u8 and no or-and over numbers other than
//! u8/bool, so those are `Unsupported` here too (the kernel source still
//! instantiates them, unused). Max-times and min-max (core codes 4 and 5)
//! have no device kernels yet ([`Semiring::from_kind`] says `None`).
//!
//! Integers: plus-times wraps (two's complement), min-plus and max-plus add
//! with saturation and use the type's maximum (minimum) as +inf (-inf), as in
//! mmsb-core. The GPU folds in a tree, so float sums agree within a rounding
//! tolerance and everything else agrees exactly (saturating signed sums are
//! exact as long as no partial sum saturates).

use crate::csr::Csr;
use mmsb_core::dtype::DType;
use mmsb_core::error::{Error, ErrorCode, Result};
use mmsb_core::semiring::{Semiring as CoreSemiring, SemiringKind};
use mmsb_core::semiring_kernels;
use std::any::TypeId;

/// A built-in semiring (the ones with GPU kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Semiring {
    /// `(+, *)` over numbers: linear algebra.
    PlusTimes,
    /// `(min, +)`: shortest paths (tropical).
    MinPlus,
    /// `(max, +)`: longest / critical paths.
    MaxPlus,
    /// `(or, and)`: reachability.
    OrAnd,
}

impl Semiring {
    /// Every built-in semiring.
    pub const ALL: [Semiring; 4] = [
        Semiring::PlusTimes,
        Semiring::MinPlus,
        Semiring::MaxPlus,
        Semiring::OrAnd,
    ];

    /// The name used in kernel names and reports (`plus_times`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Semiring::PlusTimes => "plus_times",
            Semiring::MinPlus => "min_plus",
            Semiring::MaxPlus => "max_plus",
            Semiring::OrAnd => "or_and",
        }
    }

    /// mmsb-core's code for this semiring.
    pub fn kind(self) -> SemiringKind {
        match self {
            Semiring::PlusTimes => SemiringKind::PlusTimes,
            Semiring::MinPlus => SemiringKind::MinPlus,
            Semiring::MaxPlus => SemiringKind::MaxPlus,
            Semiring::OrAnd => SemiringKind::OrAnd,
        }
    }

    /// The semiring with device kernels for mmsb-core's `kind` (`None` for
    /// max-times and min-max, which have none yet).
    pub fn from_kind(kind: SemiringKind) -> Option<Semiring> {
        match kind {
            SemiringKind::PlusTimes => Some(Semiring::PlusTimes),
            SemiringKind::MinPlus => Some(Semiring::MinPlus),
            SemiringKind::MaxPlus => Some(Semiring::MaxPlus),
            SemiringKind::OrAnd => Some(Semiring::OrAnd),
            SemiringKind::MaxTimes | SemiringKind::MinMax => None,
        }
    }

    /// Whether mmsb-core defines this semiring over `t` (and so the GPU
    /// side accepts it).
    pub fn supports(self, t: ElemType) -> bool {
        self.kind().supports(t.dtype())
    }

    /// An `Unsupported` error unless [`Semiring::supports`] `t`.
    pub fn check(self, t: ElemType) -> Result<()> {
        if self.supports(t) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::Unsupported,
                format!(
                    "semiring {} has no built-in over {} in mmsb-core",
                    self.name(),
                    t.name()
                ),
            ))
        }
    }
}

/// The element types with GPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `u8` (also booleans stored as bytes).
    U8,
}

impl ElemType {
    /// Every element type.
    pub const ALL: [ElemType; 5] = [
        ElemType::F32,
        ElemType::F64,
        ElemType::I32,
        ElemType::I64,
        ElemType::U8,
    ];

    /// The name used in kernel names (`f32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
            ElemType::I32 => "i32",
            ElemType::I64 => "i64",
            ElemType::U8 => "u8",
        }
    }

    /// mmsb-core's dtype code for this type.
    pub fn dtype(self) -> DType {
        match self {
            ElemType::F32 => DType::F32,
            ElemType::F64 => DType::F64,
            ElemType::I32 => DType::I32,
            ElemType::I64 => DType::I64,
            ElemType::U8 => DType::U8,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 | ElemType::I32 => 4,
            ElemType::F64 | ElemType::I64 => 8,
            ElemType::U8 => 1,
        }
    }
}

/// An element type the semiring kernels handle. Sealed: the five built-ins.
pub trait Elem: Copy + PartialEq + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The runtime tag (selects the kernel).
    const TYPE: ElemType;
    /// Additive zero of the number type.
    const ZERO: Self;
    /// Multiplicative one of the number type.
    const ONE: Self;
    /// +inf for floats, the maximum for integers.
    const MAXV: Self;
    /// -inf for floats, the minimum for integers.
    const MINV: Self;
    /// `a + b`, wrapping for integers.
    fn wrapping_add(self, b: Self) -> Self;
    /// `a * b`, wrapping for integers.
    fn wrapping_mul(self, b: Self) -> Self;
    /// `a + b`, saturating for integers.
    fn saturating_add(self, b: Self) -> Self;
    /// Whether the value is the number zero.
    fn is_zero(self) -> bool;
    /// 1 for true, 0 for false.
    fn from_bool(b: bool) -> Self;
    /// The little-endian bytes of a slice of elements.
    fn slice_as_bytes(s: &[Self]) -> &[u8];
    /// The value as an `f64` (for tolerances and reports).
    fn as_f64(self) -> f64;
}

macro_rules! int_elem {
    ($t:ty, $tag:expr) => {
        impl Elem for $t {
            const TYPE: ElemType = $tag;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const MAXV: Self = <$t>::MAX;
            const MINV: Self = <$t>::MIN;
            fn wrapping_add(self, b: Self) -> Self {
                <$t>::wrapping_add(self, b)
            }
            fn wrapping_mul(self, b: Self) -> Self {
                <$t>::wrapping_mul(self, b)
            }
            fn saturating_add(self, b: Self) -> Self {
                <$t>::saturating_add(self, b)
            }
            fn is_zero(self) -> bool {
                self == 0
            }
            fn from_bool(b: bool) -> Self {
                b as $t
            }
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn slice_as_bytes(s: &[Self]) -> &[u8] {
                // SAFETY: a plain integer slice has no padding and every byte
                // pattern is a valid u8; the length is the slice's byte size.
                unsafe {
                    std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
                }
            }
        }
    };
}

macro_rules! float_elem {
    ($t:ty, $tag:expr) => {
        impl Elem for $t {
            const TYPE: ElemType = $tag;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MAXV: Self = <$t>::INFINITY;
            const MINV: Self = <$t>::NEG_INFINITY;
            fn wrapping_add(self, b: Self) -> Self {
                self + b
            }
            fn wrapping_mul(self, b: Self) -> Self {
                self * b
            }
            fn saturating_add(self, b: Self) -> Self {
                self + b
            }
            fn is_zero(self) -> bool {
                self == 0.0
            }
            fn from_bool(b: bool) -> Self {
                if b {
                    1.0
                } else {
                    0.0
                }
            }
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn slice_as_bytes(s: &[Self]) -> &[u8] {
                // SAFETY: a float slice has no padding and every byte pattern
                // is a valid u8; the length is the slice's byte size.
                unsafe {
                    std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
                }
            }
        }
    };
}

int_elem!(i32, ElemType::I32);
int_elem!(i64, ElemType::I64);
int_elem!(u8, ElemType::U8);
float_elem!(f32, ElemType::F32);
float_elem!(f64, ElemType::F64);

/// `x` as a slice of `B`, which is the same type as `A` (checked).
fn same<A: 'static, B: 'static>(x: &[A]) -> Result<&[B]> {
    if TypeId::of::<A>() != TypeId::of::<B>() {
        return Err(Error::invalid("semiring element type mismatch"));
    }
    // SAFETY: A and B are the same type (equal TypeIds), so the pointer,
    // length and alignment of the slice are valid for B.
    Ok(unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<B>(), x.len()) })
}

/// [`same`] for a mutable slice.
fn same_mut<A: 'static, B: 'static>(x: &mut [A]) -> Result<&mut [B]> {
    if TypeId::of::<A>() != TypeId::of::<B>() {
        return Err(Error::invalid("semiring element type mismatch"));
    }
    // SAFETY: A and B are the same type (equal TypeIds); the borrow is
    // exclusive and moves into the result.
    Ok(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<B>(), x.len()) })
}

/// One value of `A` as `B`, the same type (checked).
fn same_val<A: Copy + 'static, B: Copy + 'static>(a: A) -> Result<B> {
    same::<A, B>(std::slice::from_ref(&a)).map(|s| s[0])
}

/// `⊕` over every element, starting from `zero`: mmsb-core's
/// `semiring_kernels::fold_add`. `Unsupported` for a pair core lacks.
pub fn fold_add<T: Elem>(s: Semiring, x: &[T]) -> Result<T> {
    s.check(T::TYPE)?;
    mmsb_core::with_semiring!(s.kind(), T::TYPE.dtype(), |S| {
        let r = semiring_kernels::fold_add(&S::default(), same::<T, <S as CoreSemiring>::Elem>(x)?);
        same_val::<<S as CoreSemiring>::Elem, T>(r)
    })
}

/// `⊗` over every element, starting from `one`: mmsb-core's
/// `semiring_kernels::fold_mul`.
pub fn fold_mul<T: Elem>(s: Semiring, x: &[T]) -> Result<T> {
    s.check(T::TYPE)?;
    mmsb_core::with_semiring!(s.kind(), T::TYPE.dtype(), |S| {
        let r = semiring_kernels::fold_mul(&S::default(), same::<T, <S as CoreSemiring>::Elem>(x)?);
        same_val::<<S as CoreSemiring>::Elem, T>(r)
    })
}

/// `c[i] = c[i] ⊕ t[i]` where bit `i` of `mask` is set (every `i` without a
/// mask): GraphBLAS's masked accumulate `C<M> = C ⊙ T`, by mmsb-core's
/// `accumulate` / `accumulate_masked`. One mask bit per element, packed in
/// 64-bit words (no bits past the end).
pub fn accumulate<T: Elem>(s: Semiring, c: &mut [T], t: &[T], mask: Option<&[u64]>) -> Result<()> {
    check_accumulate(c.len(), t.len(), mask)?;
    s.check(T::TYPE)?;
    mmsb_core::with_semiring!(s.kind(), T::TYPE.dtype(), |S| {
        let sr = S::default();
        let c = same_mut::<T, <S as CoreSemiring>::Elem>(c)?;
        let t = same::<T, <S as CoreSemiring>::Elem>(t)?;
        match mask {
            Some(m) => semiring_kernels::accumulate_masked(&sr, c, t, m),
            None => semiring_kernels::accumulate(&sr, c, t),
        }
    })
}

/// `y[r] = ⊕_k a[r,k] ⊗ x[k]` (the zero for an empty row), folded left to
/// right with mmsb-core's `⊕` and `⊗` (as `mmsb_core::semiring_matrix::
/// mxv_reference`; this CSR may repeat a column, core's may not).
pub fn spmv<T: Elem>(s: Semiring, a: &Csr<T>, x: &[T], y: &mut [T]) -> Result<()> {
    a.check_spmv(x.len(), y.len())?;
    s.check(T::TYPE)?;
    mmsb_core::with_semiring!(s.kind(), T::TYPE.dtype(), |S| {
        let sr = S::default();
        let vals = same::<T, <S as CoreSemiring>::Elem>(&a.vals)?;
        let x = same::<T, <S as CoreSemiring>::Elem>(x)?;
        let y = same_mut::<T, <S as CoreSemiring>::Elem>(y)?;
        for (r, yr) in y.iter_mut().enumerate() {
            let (lo, hi) = (a.row_ptr[r] as usize, a.row_ptr[r + 1] as usize);
            *yr = (lo..hi).fold(sr.zero(), |acc, k| {
                sr.add(acc, sr.mul(vals[k], x[a.cols[k] as usize]))
            });
        }
        Ok(())
    })
}

/// The shape rules of [`accumulate`]: equal lengths, a mask of the right size.
pub fn check_accumulate(c: usize, t: usize, mask: Option<&[u64]>) -> Result<()> {
    if c != t {
        return Err(Error::invalid(format!(
            "accumulate: c has {c} elements, t has {t}"
        )));
    }
    if let Some(m) = mask {
        if m.len() != c.div_ceil(64) {
            return Err(Error::invalid(format!(
                "accumulate: mask has {} words, {c} elements need {}",
                m.len(),
                c.div_ceil(64)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsb_core::semiring::{MinPlus, PlusTimes};
    use mmsb_core::semiring_matrix::mxv_reference;

    #[test]
    fn codes_map_onto_mmsb_core() {
        for s in Semiring::ALL {
            assert_eq!(Semiring::from_kind(s.kind()), Some(s));
            assert_eq!(s.kind().name(), s.name());
        }
        assert_eq!(Semiring::from_kind(SemiringKind::MinMax), None);
        for t in ElemType::ALL {
            assert_eq!(t.dtype().size() as usize, t.size());
        }
        assert!(!Semiring::MaxPlus.supports(ElemType::U8));
        assert!(!Semiring::OrAnd.supports(ElemType::F64));
        assert!(Semiring::OrAnd.supports(ElemType::U8));
    }

    #[test]
    fn pairs_core_lacks_are_unsupported() {
        let e = fold_add(Semiring::MaxPlus, &[1u8, 2]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        let e = fold_add(Semiring::OrAnd, &[1.0f64]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
    }

    #[test]
    fn folds_and_accumulate_equal_mmsb_core_reference() {
        let x: Vec<i64> = (0..300).map(|i| (i * 7919) % 101 - 50).collect();
        let s = MinPlus::<i64>::new();
        let want = semiring_kernels::fold_add_reference(&s, &x);
        assert_eq!(fold_add(Semiring::MinPlus, &x).unwrap(), want);
        let p = PlusTimes::<i64>::new();
        assert_eq!(
            fold_mul(Semiring::PlusTimes, &x[..20]).unwrap(),
            semiring_kernels::fold_mul_reference(&p, &x[..20])
        );
        let mut c = vec![1i32; 70];
        let t = vec![2i32; 70];
        let m = vec![0u64, 1 << 5]; // element 69
        accumulate(Semiring::PlusTimes, &mut c, &t, Some(&m)).unwrap();
        assert_eq!(c[69], 3);
        assert_eq!(c.iter().filter(|&&v| v == 1).count(), 69);
    }

    #[test]
    fn spmv_equals_mmsb_core_mxv_reference() {
        let trip: Vec<(usize, usize, f64)> = (0..40)
            .map(|i| ((i * 7) % 9, (i * 5) % 11, (i % 13) as f64 - 3.0))
            .collect();
        let s = MinPlus::<f64>::new();
        let core = mmsb_core::Csr::from_triplets(&s, 9, 11, &trip).unwrap();
        let a = Csr::from_core(&core).unwrap();
        let x: Vec<f64> = (0..11).map(|i| i as f64 * 0.5).collect();
        let mut want = vec![0.0; 9];
        mxv_reference(&s, &core, &x, &mut want, false).unwrap();
        let mut got = vec![7.0; 9];
        spmv(Semiring::MinPlus, &a, &x, &mut got).unwrap();
        assert_eq!(got, want);
    }
}

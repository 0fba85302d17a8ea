//! The semirings the GPU kernels implement, and their CPU reference.
//!
//! A semiring gives two operations: `⊕` (add, with identity `zero`) and `⊗`
//! (mul, with identity `one`). The kernels in `kernels/semiring.cu` and the
//! functions here implement the same four built-ins over the same five element
//! types ([`Elem`]: `f32`, `f64`, `i32`, `i64`, `u8`), with the same rules:
//!
//! | semiring | `⊕` | zero | `⊗` | one |
//! |---|---|---|---|---|
//! | [`Semiring::PlusTimes`] | `a + b` | 0 | `a * b` | 1 |
//! | [`Semiring::MinPlus`] | `min(a, b)` | +inf | `a + b`, +inf absorbing | 0 |
//! | [`Semiring::MaxPlus`] | `max(a, b)` | -inf | `a + b`, -inf absorbing | 0 |
//! | [`Semiring::OrAnd`] | `a≠0 ∨ b≠0` | 0 | `a≠0 ∧ b≠0` | 1 |
//!
//! Integers: plus-times wraps (two's complement), min-plus and max-plus add
//! with saturation and use the type's maximum (minimum) as +inf (-inf).
//! Folding is sequential here; the GPU folds in a tree, so float sums agree
//! within a rounding tolerance and everything else agrees exactly (saturating
//! signed sums are exact as long as no partial sum saturates).
//!
//! These functions are the CPU path every GPU entry point falls back to, so a
//! fallback gives exactly what a CPU-only run gives.

use crate::csr::Csr;
use mmsb_core::error::{Error, Result};

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

    /// `⊕`.
    pub fn add<T: Elem>(self, a: T, b: T) -> T {
        match self {
            Semiring::PlusTimes => a.wrapping_add(b),
            Semiring::MinPlus => {
                if b < a {
                    b
                } else {
                    a
                }
            }
            Semiring::MaxPlus => {
                if b > a {
                    b
                } else {
                    a
                }
            }
            Semiring::OrAnd => T::from_bool(!a.is_zero() || !b.is_zero()),
        }
    }

    /// `⊗`.
    pub fn mul<T: Elem>(self, a: T, b: T) -> T {
        match self {
            Semiring::PlusTimes => a.wrapping_mul(b),
            Semiring::MinPlus => {
                if a == T::MAXV || b == T::MAXV {
                    T::MAXV
                } else {
                    a.saturating_add(b)
                }
            }
            Semiring::MaxPlus => {
                if a == T::MINV || b == T::MINV {
                    T::MINV
                } else {
                    a.saturating_add(b)
                }
            }
            Semiring::OrAnd => T::from_bool(!a.is_zero() && !b.is_zero()),
        }
    }

    /// The identity of `⊕`.
    pub fn zero<T: Elem>(self) -> T {
        match self {
            Semiring::PlusTimes | Semiring::OrAnd => T::ZERO,
            Semiring::MinPlus => T::MAXV,
            Semiring::MaxPlus => T::MINV,
        }
    }

    /// The identity of `⊗`.
    pub fn one<T: Elem>(self) -> T {
        match self {
            Semiring::PlusTimes | Semiring::OrAnd => T::ONE,
            Semiring::MinPlus | Semiring::MaxPlus => T::ZERO,
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

/// `⊕` over every element, starting from `zero`.
pub fn fold_add<T: Elem>(s: Semiring, x: &[T]) -> T {
    x.iter().fold(s.zero(), |acc, &v| s.add(acc, v))
}

/// `⊗` over every element, starting from `one`.
pub fn fold_mul<T: Elem>(s: Semiring, x: &[T]) -> T {
    x.iter().fold(s.one(), |acc, &v| s.mul(acc, v))
}

/// `c[i] = c[i] ⊕ t[i]` where bit `i` of `mask` is set (every `i` without a
/// mask): GraphBLAS's masked accumulate `C<M> = C ⊙ T`. One mask bit per
/// element, packed in 64-bit words.
pub fn accumulate<T: Elem>(s: Semiring, c: &mut [T], t: &[T], mask: Option<&[u64]>) -> Result<()> {
    check_accumulate(c.len(), t.len(), mask)?;
    for (i, (ci, &ti)) in c.iter_mut().zip(t).enumerate() {
        if mask.is_some_and(|m| (m[i / 64] >> (i % 64)) & 1 == 0) {
            continue;
        }
        *ci = s.add(*ci, ti);
    }
    Ok(())
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

/// `y[r] = ⊕_k a[r,k] ⊗ x[k]` (the zero for an empty row).
pub fn spmv<T: Elem>(s: Semiring, a: &Csr<T>, x: &[T], y: &mut [T]) -> Result<()> {
    a.check_spmv(x.len(), y.len())?;
    for (r, yr) in y.iter_mut().enumerate() {
        let (lo, hi) = (a.row_ptr[r] as usize, a.row_ptr[r + 1] as usize);
        *yr = (lo..hi).fold(s.zero(), |acc, k| {
            s.add(acc, s.mul(a.vals[k], x[a.cols[k] as usize]))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_plus_treats_infinity_as_absorbing_for_integers() {
        let s = Semiring::MinPlus;
        assert_eq!(s.mul(i32::MAX, -5), i32::MAX);
        assert_eq!(s.mul(3i32, 4), 7);
        assert_eq!(s.mul(i64::MAX - 1, 5), i64::MAX);
        assert_eq!(s.add(3u8, 2), 2);
    }

    #[test]
    fn or_and_is_boolean_on_any_nonzero_value() {
        let s = Semiring::OrAnd;
        assert_eq!(s.add(0u8, 7), 1);
        assert_eq!(s.mul(2.5f64, 3.0), 1.0);
        assert_eq!(s.mul(2i64, 0), 0);
    }

    #[test]
    fn masked_accumulate_touches_only_masked_elements() {
        let mut c = vec![1i32; 70];
        let t = vec![2i32; 70];
        let mut m = vec![0u64; 2];
        m[1] = 1 << 5; // element 69
        accumulate(Semiring::PlusTimes, &mut c, &t, Some(&m)).unwrap();
        assert_eq!(c[69], 3);
        assert_eq!(c.iter().filter(|&&v| v == 1).count(), 69);
    }
}

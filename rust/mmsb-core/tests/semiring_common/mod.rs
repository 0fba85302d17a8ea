//! Shared helpers for the semiring property tests: element generators that
//! respect each built-in's documented domain, and comparisons with the
//! documented float tolerance.
#![allow(dead_code)]

use mmsb_core::semiring::SemiringKind;
use rand::rngs::StdRng;
use rand::Rng;
use std::fmt::Debug;

/// What a generated element may be; see the domain column of `docs/semiring.md`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Law tests: the semiring's documented domain, edges included.
    Laws,
    /// Long folds of `⊗`: values whose running product or sum stays finite.
    LongProduct,
}

/// An element type the tests can draw and measure.
pub trait TestElem: Copy + PartialEq + Debug + Send + Sync + 'static {
    /// One element of `kind`'s domain.
    fn draw(rng: &mut StdRng, kind: SemiringKind, domain: Domain) -> Self;
    /// The value as f64 (for tolerances).
    fn to_f64(self) -> f64;
    /// Machine epsilon (0 for exact types).
    const EPS: f64;
    /// Largest finite value, as f64.
    const MAX_F: f64;
}

macro_rules! float_elem {
    ($t:ty) => {
        impl TestElem for $t {
            const EPS: f64 = <$t>::EPSILON as f64;
            const MAX_F: f64 = <$t>::MAX as f64;
            fn draw(rng: &mut StdRng, kind: SemiringKind, domain: Domain) -> Self {
                let edge = rng.gen_range(0..10) == 0;
                let small = rng.gen_range(0..4) == 0;
                let v: $t = if small {
                    rng.gen_range(-4i32..=4) as $t
                } else {
                    rng.gen_range(-1000.0..1000.0)
                };
                match (kind, domain) {
                    (SemiringKind::PlusTimes, Domain::LongProduct)
                    | (SemiringKind::MaxTimes, Domain::LongProduct) => {
                        let m: $t = rng.gen_range(0.5..2.0);
                        if kind == SemiringKind::PlusTimes && rng.gen_bool(0.5) {
                            -m
                        } else {
                            m
                        }
                    }
                    (SemiringKind::PlusTimes, _) => v,
                    (SemiringKind::MinPlus, _) if edge => <$t>::INFINITY,
                    (SemiringKind::MinPlus, _) => v,
                    (SemiringKind::MaxPlus, _) if edge => <$t>::NEG_INFINITY,
                    (SemiringKind::MaxPlus, _) => v,
                    (SemiringKind::MaxTimes, _) => v.abs(),
                    (SemiringKind::MinMax, _) if edge => {
                        if rng.gen_bool(0.5) {
                            <$t>::INFINITY
                        } else {
                            <$t>::NEG_INFINITY
                        }
                    }
                    (SemiringKind::MinMax, _) => v,
                    (SemiringKind::OrAnd, _) => v,
                }
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
float_elem!(f32);
float_elem!(f64);

macro_rules! int_elem {
    ($t:ty, $nonneg:expr) => {
        impl TestElem for $t {
            const EPS: f64 = 0.0;
            const MAX_F: f64 = <$t>::MAX as f64;
            fn draw(rng: &mut StdRng, kind: SemiringKind, _domain: Domain) -> Self {
                let edges = [<$t>::MIN, <$t>::MAX, 0 as $t, 1 as $t, <$t>::MAX / 2];
                let any: $t = if rng.gen_range(0..8) == 0 {
                    edges[rng.gen_range(0..edges.len())]
                } else if rng.gen_bool(0.5) {
                    rng.gen_range(0..=9) as $t
                } else {
                    rng.gen()
                };
                // Non-negative values, the domain where the saturating
                // semirings are exact whatever the length of a fold.
                let nonneg: $t = ($nonneg)(any);
                match kind {
                    SemiringKind::PlusTimes => any,
                    SemiringKind::MinPlus | SemiringKind::MaxTimes => nonneg,
                    SemiringKind::MaxPlus => {
                        if rng.gen_range(0..8) == 0 {
                            <$t>::MIN
                        } else {
                            nonneg
                        }
                    }
                    SemiringKind::MinMax => any,
                    SemiringKind::OrAnd => rng.gen_range(0..=1) as $t,
                }
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
int_elem!(i32, |x: i32| x.checked_abs().unwrap_or(i32::MAX));
int_elem!(i64, |x: i64| x.checked_abs().unwrap_or(i64::MAX));
int_elem!(u8, |x: u8| x);
int_elem!(u32, |x: u32| x);
int_elem!(u64, |x: u64| x);

/// Whether `got` equals `want` exactly, or within `slack` (an absolute
/// tolerance; infinities must match exactly).
pub fn close<E: TestElem>(got: E, want: E, slack: f64) -> bool {
    if got == want {
        return true;
    }
    let (g, w) = (got.to_f64(), want.to_f64());
    g.is_finite() && w.is_finite() && (g - w).abs() <= slack
}

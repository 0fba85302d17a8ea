//! Semirings: the algebra numeric pages propagate through.
//!
//! A semiring is a set with two operations, `⊕` ("add") and `⊗` ("mul"), and
//! their identities `0` ("zero") and `1` ("one"), such that `⊕` is associative
//! and commutative, `⊗` is associative, `⊗` distributes over `⊕`, and `0`
//! annihilates: `a ⊗ 0 = 0 ⊗ a = 0`. Swapping `(+, ×)` for `(min, +)` turns a
//! matrix-vector product into one step of a shortest-path relaxation, `(∨, ∧)`
//! into one step of reachability, and so on — the idea behind GraphBLAS, which
//! MMSB applies to pages linked by semiring edges.
//!
//! [`Semiring`] is the trait: generic code (the kernels in
//! [`crate::semiring_kernels`], the propagation engine) is written once over it
//! and monomorphised, so a user-defined semiring in Rust runs at full speed.
//! Methods take `&self`, so a semiring may carry run-time state (the C ABI's
//! function-pointer semirings do); the built-ins are zero-sized and cost nothing.
//! Besides the operations a semiring declares [`Properties`] the engine plans
//! with (commutative and idempotent `⊕`, subtraction for incremental waves,
//! exactness) and an optional *terminal* value of `⊕` for early exit.
//!
//! # Built-ins
//!
//! | kind ([`SemiringKind`]) | `⊕` | `⊗` | zero | one | element types | domain |
//! |---|---|---|---|---|---|---|
//! | [`PlusTimes`] | `+` | `×` | 0 | 1 | f32 f64 i32 i64 u8 u32 u64 | all values; integers **wrap** |
//! | [`MinPlus`] (tropical) | min | `+` | +∞ / MAX | 0 | f32 f64 i32 i64 u8 u32 u64 | no −∞, no NaN; integers **saturate**, MAX is +∞ |
//! | [`MaxPlus`] | max | `+` | −∞ / MIN | 0 | f32 f64 i32 i64 | no +∞, no NaN; integers **saturate**, MIN is −∞ |
//! | [`MaxTimes`] | max | `×` | 0 | 1 | f32 f64 i32 i64 u8 u32 u64 | non-negative values; integers **saturate** |
//! | [`MinMax`] | min | max | +∞ / MAX | −∞ / MIN | f32 f64 i32 i64 u8 u32 u64 | all values but NaN |
//! | [`OrAnd`] (boolean) | ∨ | ∧ | false | true | bool, u8 (0 / non-zero) | all values |
//!
//! **Integer overflow.** Plus-times over integers is arithmetic modulo `2^n`
//! (wrapping): a ring, so every law, and subtraction, hold exactly. The
//! tropical semirings over integers use the type's MAX (min-plus) or MIN
//! (max-plus) as the infinite zero: `⊗` returns the infinity if either operand
//! is it, and otherwise adds with saturation, so a path too long to represent
//! becomes "unreachable" instead of wrapping to a short one. The laws then hold
//! exactly as long as no finite sum overflows (sums of three values of
//! magnitude below `MAX / 4` never do). Max-times over integers multiplies with
//! saturation, which keeps every law exactly on its non-negative domain.
//!
//! **Floating point.** `⊕` and `⊗` of min/max kinds never round, so those
//! semirings are exact; `+` and `×` round, so plus-times and the `+` of
//! min-plus and max-plus satisfy associativity and distributivity within a
//! relative tolerance only (stated by [`Properties::exact`]). `min` and `max` are
//! IEEE minNum/maxNum (`f64::min`, `f64::max`); NaN is outside every domain,
//! and `min(-0.0, +0.0)` may be either zero (they compare equal).
//!
//! **Booleans.** [`OrAnd`] over `u8` reads 0 as false and any other byte as
//! true, and always returns 0 or 1 (so the [`DType::Bool`] page layout, one
//! byte per value, is closed under it).
//!
//! # Run-time descriptors
//!
//! The C ABI, the log and the engine name a built-in by a ([`SemiringKind`],
//! [`DType`]) pair of stable codes. [`with_semiring!`](crate::with_semiring)
//! turns such a pair into the concrete type, so a caller writes its generic
//! code once and dispatches at run time; [`SemiringKind::supports`] and
//! [`properties`] answer questions about a pair without generics.

use crate::dtype::DType;
use crate::error::{Error, ErrorCode, Result};
use std::fmt::Debug;
use std::marker::PhantomData;

/// What a semiring promises beyond the axioms; the engine plans waves with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Properties {
    /// `a ⊕ b = b ⊕ a`: concurrent `⊕=` writers merge in any order.
    pub commutative_add: bool,
    /// `a ⊗ b = b ⊗ a` (every built-in). The fast folds reorder their
    /// operands, so [`crate::semiring_kernels::fold_mul`] folds a
    /// non-commutative `⊗` sequentially (and `fold_add` likewise a
    /// non-commutative `⊕`, which a semiring should not have).
    pub commutative_mul: bool,
    /// `a ⊕ a = a` (min, max, or): an incremental wave may push improvements
    /// only, and must recompute an entry from all inputs when it gets worse.
    pub idempotent_add: bool,
    /// [`Semiring::sub`] returns `Some`: `(a ⊖ b) ⊕ b = a`, so an incremental
    /// wave may push `W ⊗ Δx` (plus-times).
    pub has_subtraction: bool,
    /// `⊕` and `⊗` are exactly associative and distributive on the element
    /// type (integers, booleans, min/max); `false` for float sums and products,
    /// whose results depend on evaluation order within rounding.
    pub exact: bool,
}

/// A semiring over the element type [`Semiring::Elem`]. See the module docs.
///
/// Implementations must satisfy the semiring laws on their documented domain:
/// `⊕` associative and commutative with identity [`Semiring::zero`], `⊗`
/// associative with identity [`Semiring::one`], `⊗` distributing over `⊕`, and
/// `zero` annihilating under `⊗`. The property tests in
/// `tests/semiring_laws.rs` check every built-in.
pub trait Semiring: Clone + Send + Sync {
    /// The element type.
    type Elem: Copy + PartialEq + Debug + Send + Sync + 'static;

    /// The identity of `⊕`, which annihilates under `⊗`.
    fn zero(&self) -> Self::Elem;
    /// The identity of `⊗`.
    fn one(&self) -> Self::Elem;
    /// `a ⊕ b`.
    fn add(&self, a: Self::Elem, b: Self::Elem) -> Self::Elem;
    /// `a ⊗ b`.
    fn mul(&self, a: Self::Elem, b: Self::Elem) -> Self::Elem;
    /// The semiring's [`Properties`].
    fn properties(&self) -> Properties;

    /// `a ⊖ b`, the inverse of `⊕ b`: `(a ⊖ b) ⊕ b = a`. `None` when the
    /// semiring has no subtraction (then [`Properties::has_subtraction`] is
    /// `false`). Incremental waves use it to push a change `new ⊖ old`.
    #[inline(always)]
    fn sub(&self, a: Self::Elem, b: Self::Elem) -> Option<Self::Elem> {
        let _ = (a, b);
        None
    }

    /// The terminal (absorbing) value of `⊕`, if any: `a ⊕ t = t` for every
    /// `a`, so a fold that reaches it can stop (min-plus: −∞; or-and: true).
    #[inline(always)]
    fn terminal(&self) -> Option<Self::Elem> {
        None
    }

    /// Whether `a` is the terminal value of `⊕`.
    #[inline(always)]
    fn is_terminal(&self, a: Self::Elem) -> bool {
        self.terminal().is_some_and(|t| t == a)
    }

    /// The ([`SemiringKind`], [`DType`]) pair of a built-in; `None` for a
    /// user-defined semiring.
    fn descriptor(&self) -> Option<(SemiringKind, DType)> {
        None
    }
}

/// The built-in semirings by stable code (C ABI, log format, delta accumulators).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SemiringKind {
    /// `(+, ×, 0, 1)`: linear algebra, valuations.
    PlusTimes = 1,
    /// `(min, +, +∞, 0)`: shortest paths (tropical).
    MinPlus = 2,
    /// `(max, +, −∞, 0)`: critical (longest) paths.
    MaxPlus = 3,
    /// `(max, ×, 0, 1)`: most reliable path (non-negative values).
    MaxTimes = 4,
    /// `(min, max, +∞, −∞)`: bottleneck paths.
    MinMax = 5,
    /// `(∨, ∧, false, true)`: reachability.
    OrAnd = 6,
}

impl SemiringKind {
    /// Every built-in kind, in code order.
    pub const ALL: [SemiringKind; 6] = [
        SemiringKind::PlusTimes,
        SemiringKind::MinPlus,
        SemiringKind::MaxPlus,
        SemiringKind::MaxTimes,
        SemiringKind::MinMax,
        SemiringKind::OrAnd,
    ];

    /// The kind with this stable code.
    pub fn from_u8(n: u8) -> Result<SemiringKind> {
        SemiringKind::ALL
            .iter()
            .copied()
            .find(|k| *k as u8 == n)
            .ok_or_else(|| Error::invalid(format!("unknown semiring kind {n}")))
    }

    /// A short name (`"plus_times"`, `"min_plus"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SemiringKind::PlusTimes => "plus_times",
            SemiringKind::MinPlus => "min_plus",
            SemiringKind::MaxPlus => "max_plus",
            SemiringKind::MaxTimes => "max_times",
            SemiringKind::MinMax => "min_max",
            SemiringKind::OrAnd => "or_and",
        }
    }

    /// Whether this kind has a built-in over `dtype`.
    pub fn supports(self, dtype: DType) -> bool {
        use DType::*;
        match self {
            SemiringKind::PlusTimes
            | SemiringKind::MinPlus
            | SemiringKind::MaxTimes
            | SemiringKind::MinMax => matches!(dtype, U8 | I32 | I64 | F32 | F64 | U32 | U64),
            SemiringKind::MaxPlus => matches!(dtype, I32 | I64 | F32 | F64),
            SemiringKind::OrAnd => matches!(dtype, U8 | Bool),
        }
    }

    /// The dtypes this kind supports, in dtype order.
    pub fn dtypes(self) -> Vec<DType> {
        DType::ALL
            .iter()
            .copied()
            .filter(|d| self.supports(*d))
            .collect()
    }
}

/// The [`Properties`] of the built-in (`kind`, `dtype`); an
/// [`ErrorCode::Unsupported`] error if there is none.
pub fn properties(kind: SemiringKind, dtype: DType) -> Result<Properties> {
    crate::with_semiring!(kind, dtype, |S| Ok(<S as Semiring>::properties(
        &S::default()
    )))
}

/// The error for a (kind, dtype) pair without a built-in.
pub fn unsupported(kind: SemiringKind, dtype: DType) -> Error {
    Error::new(
        ErrorCode::Unsupported,
        format!(
            "semiring {} has no built-in over {} (supported: {})",
            kind.name(),
            dtype.name(),
            kind.dtypes()
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// Runs generic code for the built-in named by a run-time ([`SemiringKind`],
/// [`DType`]) pair.
///
/// `with_semiring!(kind, dtype, |S| body)` evaluates `body` with the type alias
/// `S` bound to the built-in semiring type (construct it with `S::default()`;
/// its element type is `<S as Semiring>::Elem`). `body` must evaluate to a
/// `Result<_, Error>`; a pair without a built-in evaluates to an
/// [`ErrorCode::Unsupported`] error. [`DType::Bool`] selects the `u8`
/// element type (one byte per value) for or-and.
///
/// ```
/// use mmsb_core::semiring::{Semiring, SemiringKind};
/// use mmsb_core::{with_semiring, DType};
/// // The body is compiled once per built-in, so it must be generic:
/// fn zero_text<S: Semiring>(s: S) -> String {
///     format!("{:?}", s.zero())
/// }
/// let z = with_semiring!(SemiringKind::MinPlus, DType::F64, |S| {
///     Ok::<String, mmsb_core::Error>(zero_text(S::default()))
/// })?;
/// assert_eq!(z, "inf");
/// # Ok::<(), mmsb_core::Error>(())
/// ```
#[macro_export]
macro_rules! with_semiring {
    ($kind:expr, $dtype:expr, |$S:ident| $body:expr) => {{
        match ($kind, $dtype) {
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::F32) => {
                type $S = $crate::semiring::PlusTimes<f32>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::F64) => {
                type $S = $crate::semiring::PlusTimes<f64>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::I32) => {
                type $S = $crate::semiring::PlusTimes<i32>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::I64) => {
                type $S = $crate::semiring::PlusTimes<i64>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::U8) => {
                type $S = $crate::semiring::PlusTimes<u8>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::U32) => {
                type $S = $crate::semiring::PlusTimes<u32>;
                $body
            }
            ($crate::semiring::SemiringKind::PlusTimes, $crate::dtype::DType::U64) => {
                type $S = $crate::semiring::PlusTimes<u64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::F32) => {
                type $S = $crate::semiring::MinPlus<f32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::F64) => {
                type $S = $crate::semiring::MinPlus<f64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::I32) => {
                type $S = $crate::semiring::MinPlus<i32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::I64) => {
                type $S = $crate::semiring::MinPlus<i64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::U8) => {
                type $S = $crate::semiring::MinPlus<u8>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::U32) => {
                type $S = $crate::semiring::MinPlus<u32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinPlus, $crate::dtype::DType::U64) => {
                type $S = $crate::semiring::MinPlus<u64>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxPlus, $crate::dtype::DType::F32) => {
                type $S = $crate::semiring::MaxPlus<f32>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxPlus, $crate::dtype::DType::F64) => {
                type $S = $crate::semiring::MaxPlus<f64>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxPlus, $crate::dtype::DType::I32) => {
                type $S = $crate::semiring::MaxPlus<i32>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxPlus, $crate::dtype::DType::I64) => {
                type $S = $crate::semiring::MaxPlus<i64>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::F32) => {
                type $S = $crate::semiring::MaxTimes<f32>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::F64) => {
                type $S = $crate::semiring::MaxTimes<f64>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::I32) => {
                type $S = $crate::semiring::MaxTimes<i32>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::I64) => {
                type $S = $crate::semiring::MaxTimes<i64>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::U8) => {
                type $S = $crate::semiring::MaxTimes<u8>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::U32) => {
                type $S = $crate::semiring::MaxTimes<u32>;
                $body
            }
            ($crate::semiring::SemiringKind::MaxTimes, $crate::dtype::DType::U64) => {
                type $S = $crate::semiring::MaxTimes<u64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::F32) => {
                type $S = $crate::semiring::MinMax<f32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::F64) => {
                type $S = $crate::semiring::MinMax<f64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::I32) => {
                type $S = $crate::semiring::MinMax<i32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::I64) => {
                type $S = $crate::semiring::MinMax<i64>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::U8) => {
                type $S = $crate::semiring::MinMax<u8>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::U32) => {
                type $S = $crate::semiring::MinMax<u32>;
                $body
            }
            ($crate::semiring::SemiringKind::MinMax, $crate::dtype::DType::U64) => {
                type $S = $crate::semiring::MinMax<u64>;
                $body
            }
            ($crate::semiring::SemiringKind::OrAnd, $crate::dtype::DType::U8) => {
                type $S = $crate::semiring::OrAnd<u8>;
                $body
            }
            ($crate::semiring::SemiringKind::OrAnd, $crate::dtype::DType::Bool) => {
                type $S = $crate::semiring::OrAnd<u8>;
                $body
            }
            (k, d) => Err($crate::semiring::unsupported(k, d)),
        }
    }};
}

macro_rules! marker {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<T>(PhantomData<fn() -> T>);

        impl<T> $name<T> {
            /// The semiring (a zero-sized value).
            pub const fn new() -> Self {
                $name(PhantomData)
            }
        }
        impl<T> Default for $name<T> {
            fn default() -> Self {
                Self::new()
            }
        }
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T> Copy for $name<T> {}
    };
}

marker!(
    /// `(+, ×, 0, 1)`. Integers wrap (arithmetic modulo `2^n`), so the
    /// integer instances are rings with exact subtraction.
    PlusTimes
);
marker!(
    /// `(min, +, +∞, 0)`, the tropical semiring of shortest paths. Integer
    /// instances use MAX as +∞ and saturate.
    MinPlus
);
marker!(
    /// `(max, +, −∞, 0)`, the semiring of critical (longest) paths. Integer
    /// instances use MIN as −∞ and saturate. Signed and float types only.
    MaxPlus
);
marker!(
    /// `(max, ×, 0, 1)` over non-negative values (most reliable path).
    /// Integer instances saturate.
    MaxTimes
);
marker!(
    /// `(min, max, +∞, −∞)`: bottleneck (widest/narrowest) paths; exact on
    /// every type.
    MinMax
);
marker!(
    /// `(∨, ∧, false, true)`: reachability. Over `u8`, 0 is false and any other
    /// byte true; results are 0 or 1.
    OrAnd
);

/// `min` for the float kinds: IEEE minNum (`f64::min`), one SIMD instruction
/// plus a NaN fix-up; an `if b < a` select would let the compiler turn
/// `c = min(c, t)` into a masked store, which is slow on AVX2.
#[inline(always)]
fn fmin<T: Float>(a: T, b: T) -> T {
    a.min_(b)
}

#[inline(always)]
fn fmax<T: Float>(a: T, b: T) -> T {
    a.max_(b)
}

/// The float operations the macros need, without a numeric-traits crate.
trait Float: Copy {
    fn min_(self, b: Self) -> Self;
    fn max_(self, b: Self) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn min_(self, b: f32) -> f32 {
        self.min(b)
    }
    #[inline(always)]
    fn max_(self, b: f32) -> f32 {
        self.max(b)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn min_(self, b: f64) -> f64 {
        self.min(b)
    }
    #[inline(always)]
    fn max_(self, b: f64) -> f64 {
        self.max(b)
    }
}

const INEXACT: bool = false;
const EXACT: bool = true;

macro_rules! float_semirings {
    ($t:ty, $dt:expr) => {
        impl Semiring for PlusTimes<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                0.0
            }
            #[inline(always)]
            fn one(&self) -> $t {
                1.0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                a + b
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a * b
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: false,
                    has_subtraction: true,
                    exact: INEXACT,
                }
            }
            #[inline(always)]
            fn sub(&self, a: $t, b: $t) -> Option<$t> {
                Some(a - b)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::PlusTimes, $dt))
            }
        }

        impl Semiring for MinPlus<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::INFINITY
            }
            #[inline(always)]
            fn one(&self) -> $t {
                0.0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                fmin(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a + b
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: INEXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::NEG_INFINITY)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MinPlus, $dt))
            }
        }

        impl Semiring for MaxPlus<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::NEG_INFINITY
            }
            #[inline(always)]
            fn one(&self) -> $t {
                0.0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                fmax(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a + b
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: INEXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::INFINITY)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MaxPlus, $dt))
            }
        }

        impl Semiring for MaxTimes<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                0.0
            }
            #[inline(always)]
            fn one(&self) -> $t {
                1.0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                fmax(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a * b
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: INEXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::INFINITY)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MaxTimes, $dt))
            }
        }

        impl Semiring for MinMax<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::INFINITY
            }
            #[inline(always)]
            fn one(&self) -> $t {
                <$t>::NEG_INFINITY
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                fmin(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                fmax(a, b)
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::NEG_INFINITY)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MinMax, $dt))
            }
        }
    };
}

float_semirings!(f32, DType::F32);
float_semirings!(f64, DType::F64);

/// Integer instances of every kind but max-plus (which needs a signed type).
macro_rules! int_semirings {
    ($t:ty, $dt:expr) => {
        impl Semiring for PlusTimes<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                0
            }
            #[inline(always)]
            fn one(&self) -> $t {
                1
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                a.wrapping_add(b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a.wrapping_mul(b)
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: false,
                    has_subtraction: true,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn sub(&self, a: $t, b: $t) -> Option<$t> {
                Some(a.wrapping_sub(b))
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::PlusTimes, $dt))
            }
        }

        impl Semiring for MinPlus<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::MAX
            }
            #[inline(always)]
            fn one(&self) -> $t {
                0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                Ord::min(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                if a == <$t>::MAX || b == <$t>::MAX {
                    <$t>::MAX
                } else {
                    a.saturating_add(b)
                }
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::MIN)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MinPlus, $dt))
            }
        }

        impl Semiring for MaxTimes<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                0
            }
            #[inline(always)]
            fn one(&self) -> $t {
                1
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                Ord::max(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                a.saturating_mul(b)
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::MAX)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MaxTimes, $dt))
            }
        }

        impl Semiring for MinMax<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::MAX
            }
            #[inline(always)]
            fn one(&self) -> $t {
                <$t>::MIN
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                Ord::min(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                Ord::max(a, b)
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::MIN)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MinMax, $dt))
            }
        }
    };
}

int_semirings!(i32, DType::I32);
int_semirings!(i64, DType::I64);
int_semirings!(u8, DType::U8);
int_semirings!(u32, DType::U32);
int_semirings!(u64, DType::U64);

macro_rules! signed_max_plus {
    ($t:ty, $dt:expr) => {
        impl Semiring for MaxPlus<$t> {
            type Elem = $t;
            #[inline(always)]
            fn zero(&self) -> $t {
                <$t>::MIN
            }
            #[inline(always)]
            fn one(&self) -> $t {
                0
            }
            #[inline(always)]
            fn add(&self, a: $t, b: $t) -> $t {
                Ord::max(a, b)
            }
            #[inline(always)]
            fn mul(&self, a: $t, b: $t) -> $t {
                if a == <$t>::MIN || b == <$t>::MIN {
                    <$t>::MIN
                } else {
                    a.saturating_add(b)
                }
            }
            fn properties(&self) -> Properties {
                Properties {
                    commutative_add: true,
                    commutative_mul: true,
                    idempotent_add: true,
                    has_subtraction: false,
                    exact: EXACT,
                }
            }
            #[inline(always)]
            fn terminal(&self) -> Option<$t> {
                Some(<$t>::MAX)
            }
            fn descriptor(&self) -> Option<(SemiringKind, DType)> {
                Some((SemiringKind::MaxPlus, $dt))
            }
        }
    };
}

signed_max_plus!(i32, DType::I32);
signed_max_plus!(i64, DType::I64);

impl Semiring for OrAnd<bool> {
    type Elem = bool;
    #[inline(always)]
    fn zero(&self) -> bool {
        false
    }
    #[inline(always)]
    fn one(&self) -> bool {
        true
    }
    #[inline(always)]
    fn add(&self, a: bool, b: bool) -> bool {
        a | b
    }
    #[inline(always)]
    fn mul(&self, a: bool, b: bool) -> bool {
        a & b
    }
    fn properties(&self) -> Properties {
        Properties {
            commutative_add: true,
            commutative_mul: true,
            idempotent_add: true,
            has_subtraction: false,
            exact: EXACT,
        }
    }
    #[inline(always)]
    fn terminal(&self) -> Option<bool> {
        Some(true)
    }
    fn descriptor(&self) -> Option<(SemiringKind, DType)> {
        Some((SemiringKind::OrAnd, DType::Bool))
    }
}

impl Semiring for OrAnd<u8> {
    type Elem = u8;
    #[inline(always)]
    fn zero(&self) -> u8 {
        0
    }
    #[inline(always)]
    fn one(&self) -> u8 {
        1
    }
    #[inline(always)]
    fn add(&self, a: u8, b: u8) -> u8 {
        // `((a | b) != 0) as u8`, as one SIMD min after the or.
        (a | b).min(1)
    }
    #[inline(always)]
    fn mul(&self, a: u8, b: u8) -> u8 {
        a.min(1) & b.min(1)
    }
    fn properties(&self) -> Properties {
        Properties {
            commutative_add: true,
            commutative_mul: true,
            idempotent_add: true,
            has_subtraction: false,
            exact: EXACT,
        }
    }
    #[inline(always)]
    fn terminal(&self) -> Option<u8> {
        Some(1)
    }
    /// `1` is terminal, and so is every other non-zero byte (all read as true).
    #[inline(always)]
    fn is_terminal(&self, a: u8) -> bool {
        a != 0
    }
    fn descriptor(&self) -> Option<(SemiringKind, DType)> {
        Some((SemiringKind::OrAnd, DType::U8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip_and_unknown_codes_are_invalid() {
        for k in SemiringKind::ALL {
            assert_eq!(SemiringKind::from_u8(k as u8).unwrap(), k);
            for d in DType::ALL {
                assert_eq!(k.supports(d), properties(k, d).is_ok(), "{k:?} {d:?}");
            }
        }
        for bad in [0u8, 7, 255] {
            assert_eq!(
                SemiringKind::from_u8(bad).unwrap_err().code,
                ErrorCode::InvalidArgument
            );
        }
    }

    #[test]
    fn supported_pairs_match_the_documented_table() {
        use DType::*;
        let numeric = vec![U8, I32, I64, F32, F64, U32, U64];
        assert_eq!(SemiringKind::PlusTimes.dtypes(), numeric);
        assert_eq!(SemiringKind::MinPlus.dtypes(), numeric);
        assert_eq!(SemiringKind::MaxPlus.dtypes(), vec![I32, I64, F32, F64]);
        assert_eq!(SemiringKind::MaxTimes.dtypes(), numeric);
        assert_eq!(SemiringKind::MinMax.dtypes(), numeric);
        assert_eq!(SemiringKind::OrAnd.dtypes(), vec![U8, Bool]);
        let e = properties(SemiringKind::MaxPlus, U32).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.message.contains("i32"), "{}", e.message);
    }

    #[test]
    fn properties_agree_with_the_operations() {
        for k in SemiringKind::ALL {
            for d in k.dtypes() {
                let p = properties(k, d).unwrap();
                crate::with_semiring!(k, d, |S| {
                    let s = S::default();
                    let one = s.one();
                    let zero = s.zero();
                    assert_eq!(s.sub(one, zero).is_some(), p.has_subtraction, "{k:?} {d:?}");
                    assert_eq!(s.add(one, one) == one, p.idempotent_add, "{k:?} {d:?}");
                    if let Some(t) = s.terminal() {
                        assert!(s.is_terminal(t));
                        assert_eq!(s.add(one, t), t);
                        assert_eq!(s.add(t, zero), t);
                    }
                    let desc = s.descriptor().unwrap();
                    assert_eq!(desc.0, k);
                    Ok::<(), Error>(())
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn integer_tropical_infinities_absorb_and_finite_sums_saturate_to_them() {
        let mp = MinPlus::<i64>::new();
        assert_eq!(mp.mul(i64::MAX, -5), i64::MAX);
        assert_eq!(mp.mul(i64::MAX - 1, 10), i64::MAX);
        assert_eq!(mp.mul(3, 4), 7);
        let xp = MaxPlus::<i32>::new();
        assert_eq!(xp.mul(i32::MIN, 5), i32::MIN);
        assert_eq!(xp.mul(i32::MIN + 1, -10), i32::MIN);
        let pt = PlusTimes::<u8>::new();
        assert_eq!(pt.add(200, 100), 44);
        assert_eq!(pt.sub(44, 100), Some(200));
        let mt = MaxTimes::<u32>::new();
        assert_eq!(mt.mul(u32::MAX, 2), u32::MAX);
    }

    #[test]
    fn or_and_over_bytes_reads_non_zero_as_true_and_returns_zero_or_one() {
        let s = OrAnd::<u8>::new();
        assert_eq!(s.add(0, 0x80), 1);
        assert_eq!(s.mul(0x40, 0x02), 1);
        assert_eq!(s.mul(0x40, 0), 0);
        assert!(s.is_terminal(7));
    }
}

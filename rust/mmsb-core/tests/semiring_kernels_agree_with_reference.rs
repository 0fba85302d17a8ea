//! Every available semiring kernel (portable lanes, AVX2, AVX-512) agrees with
//! the sequential reference, for every built-in (semiring, dtype) pair, on
//! vectors of random lengths (empty, shorter than the lanes, crossing lane,
//! mask-word and early-exit block boundaries) and random masks.
//!
//! Accumulation is elementwise, so it must be bit-exact on every type. Folds
//! are exact for exact semirings; float sums and products may differ from the
//! sequential order within `2 · n · eps · Σ|xᵢ|` (sums) or
//! `2 · n · eps · Π|xᵢ|` (products) — the classical bounds for recursive
//! summation and multiplication, doubled because both orders round.

mod common;
mod semiring_common;

use common::{config, make_mask, MaskKind};
use mmsb_core::apply::Kernel;
use mmsb_core::semiring::{Semiring, SemiringKind};
use mmsb_core::semiring_kernels as sk;
use mmsb_core::{with_semiring, Error};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use semiring_common::{close, Domain, TestElem};

fn kernels() -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| sk::is_available(*k))
        .collect()
}

/// Whether `⊗` of `kind` is a product (else a sum, or exact min/max/and).
fn mul_is_product(kind: SemiringKind) -> bool {
    matches!(kind, SemiringKind::PlusTimes | SemiringKind::MaxTimes)
}

fn fold_slack<E: TestElem>(x: &[E], product: bool) -> Option<f64> {
    let n = x.len() as f64;
    let scale = if product {
        x.iter().map(|v| v.to_f64().abs()).product::<f64>()
    } else {
        x.iter().map(|v| v.to_f64().abs()).sum::<f64>()
    };
    // Near the type's range, one order may overflow where the other does not.
    if scale >= E::MAX_F / 4.0 || (product && scale < 1e-30) {
        return None;
    }
    Some(2.0 * n * E::EPS * scale)
}

fn check_pair<S: Semiring + Default>(
    kind: SemiringKind,
    len: usize,
    mask_kind: MaskKind,
    seed: u64,
) -> Result<(), String>
where
    S::Elem: TestElem,
{
    let s = S::default();
    let exact = s.properties().exact;
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<S::Elem> = (0..len)
        .map(|_| S::Elem::draw(&mut rng, kind, Domain::Laws))
        .collect();
    let xp: Vec<S::Elem> = (0..len)
        .map(|_| S::Elem::draw(&mut rng, kind, Domain::LongProduct))
        .collect();
    let c0: Vec<S::Elem> = (0..len)
        .map(|_| S::Elem::draw(&mut rng, kind, Domain::Laws))
        .collect();
    let mask = make_mask(mask_kind, len, seed ^ 0x3a5c);

    let want_add = sk::fold_add_reference(&s, &x);
    let want_mul = sk::fold_mul_reference(&s, &xp);
    let mut want_acc = c0.clone();
    sk::accumulate_reference(&s, &mut want_acc, &x).map_err(|e| e.to_string())?;
    let mut want_masked = c0.clone();
    sk::accumulate_masked_reference(&s, &mut want_masked, &x, &mask).map_err(|e| e.to_string())?;

    let add_slack = if exact {
        Some(0.0)
    } else {
        fold_slack(&x, false)
    };
    let mul_slack = if exact {
        Some(0.0)
    } else {
        fold_slack(&xp, mul_is_product(kind))
    };
    for k in kernels() {
        let e = |e: Error| format!("{}: {e}", k.name());
        let got = sk::fold_add_with(k, &s, &x).map_err(e)?;
        if let Some(slack) = add_slack {
            if !close(got, want_add, slack) {
                return Err(format!(
                    "fold_add on {}: {got:?}, reference {want_add:?} (n={len})",
                    k.name()
                ));
            }
        }
        let got = sk::fold_mul_with(k, &s, &xp).map_err(e)?;
        if let Some(slack) = mul_slack {
            if !close(got, want_mul, slack) {
                return Err(format!(
                    "fold_mul on {}: {got:?}, reference {want_mul:?} (n={len})",
                    k.name()
                ));
            }
        }
        let mut c = c0.clone();
        sk::accumulate_with(k, &s, &mut c, &x).map_err(e)?;
        if c != want_acc {
            return Err(format!("accumulate on {} differs (n={len})", k.name()));
        }
        let mut c = c0.clone();
        sk::accumulate_masked_with(k, &s, &mut c, &x, &mask).map_err(e)?;
        if c != want_masked {
            return Err(format!(
                "accumulate_masked on {} differs (n={len}, {mask_kind:?})",
                k.name()
            ));
        }
    }
    // The default entry points are one of the kernels above.
    if sk::fold_add(&s, &x) != sk::fold_add_with(sk::best(), &s, &x).map_err(|e| e.to_string())? {
        return Err("fold_add is not the best kernel".into());
    }
    Ok(())
}

fn arb_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..200,
        2 => 200usize..1500,
        1 => (sk::BLOCK - 40)..(2 * sk::BLOCK + 70),
    ]
}

fn arb_mask_kind() -> impl Strategy<Value = MaskKind> {
    prop_oneof![
        Just(MaskKind::Empty),
        Just(MaskKind::Full),
        (0u8..=100).prop_map(MaskKind::Density),
        Just(MaskKind::Words),
        (1u16..=300).prop_map(MaskKind::Runs),
    ]
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn kernels_equal_the_reference_for_every_builtin(
        len in arb_len(),
        mask_kind in arb_mask_kind(),
        seed in any::<u64>(),
    ) {
        for k in SemiringKind::ALL {
            for d in k.dtypes() {
                let r = with_semiring!(k, d, |S| Ok::<_, Error>(check_pair::<S>(k, len, mask_kind, seed)))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                r.map_err(|m| TestCaseError::fail(format!("{} over {}: {m}", k.name(), d.name())))?;
            }
        }
    }
}

#[test]
fn folds_that_meet_the_terminal_value_early_return_it() {
    // Min-plus over f64: -inf in the middle of a long vector.
    let s = mmsb_core::semiring::MinPlus::<f64>::new();
    let mut rng = StdRng::seed_from_u64(7);
    let mut x: Vec<f64> = (0..3 * sk::BLOCK)
        .map(|_| rng.gen_range(0.0..10.0))
        .collect();
    x[sk::BLOCK + 3] = f64::NEG_INFINITY;
    for k in kernels() {
        assert_eq!(sk::fold_add_with(k, &s, &x).unwrap(), f64::NEG_INFINITY);
    }
}

/// A user-defined semiring with a non-commutative `⊗`: 2x2 matrices over
/// wrapping u32 (`⊕` elementwise `+`, `⊗` the matrix product).
#[derive(Clone, Copy, Default)]
struct Mat2;

impl Semiring for Mat2 {
    type Elem = [u32; 4];
    fn zero(&self) -> [u32; 4] {
        [0; 4]
    }
    fn one(&self) -> [u32; 4] {
        [1, 0, 0, 1]
    }
    fn add(&self, a: [u32; 4], b: [u32; 4]) -> [u32; 4] {
        [0, 1, 2, 3].map(|i| a[i].wrapping_add(b[i]))
    }
    fn mul(&self, a: [u32; 4], b: [u32; 4]) -> [u32; 4] {
        let m = |x: u32, y: u32| x.wrapping_mul(y);
        [
            m(a[0], b[0]).wrapping_add(m(a[1], b[2])),
            m(a[0], b[1]).wrapping_add(m(a[1], b[3])),
            m(a[2], b[0]).wrapping_add(m(a[3], b[2])),
            m(a[2], b[1]).wrapping_add(m(a[3], b[3])),
        ]
    }
    fn properties(&self) -> mmsb_core::semiring::Properties {
        mmsb_core::semiring::Properties {
            commutative_add: true,
            commutative_mul: false,
            idempotent_add: false,
            has_subtraction: false,
            exact: true,
        }
    }
}

#[test]
fn a_user_semiring_with_non_commutative_mul_folds_in_order() {
    let s = Mat2;
    let mut rng = StdRng::seed_from_u64(11);
    // Products of the two unimodular generators never vanish (determinant 1).
    let gens = [[1, 1, 0, 1], [1, 0, 1, 1]];
    let x: Vec<[u32; 4]> = (0..1000).map(|_| gens[rng.gen_range(0..2)]).collect();
    // The product is order-sensitive: reversing it gives another matrix.
    let rev: Vec<[u32; 4]> = x.iter().rev().copied().collect();
    assert_ne!(
        sk::fold_mul_reference(&s, &x),
        sk::fold_mul_reference(&s, &rev)
    );
    for k in kernels() {
        assert_eq!(
            sk::fold_mul_with(k, &s, &x).unwrap(),
            sk::fold_mul_reference(&s, &x)
        );
        assert_eq!(
            sk::fold_add_with(k, &s, &x).unwrap(),
            sk::fold_add_reference(&s, &x)
        );
    }
}

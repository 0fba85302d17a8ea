//! Every built-in semiring satisfies the semiring laws on its documented
//! domain: `⊕` associative and commutative with identity zero, `⊗` associative
//! with identity one, zero annihilating, `⊗` distributing over `⊕` on both
//! sides; plus the declared properties (idempotence, subtraction, terminal
//! value). Exact semirings are checked with `==`; float `+` and `×` within
//! `8 · eps · (1 + |a|)(1 + |b|)(1 + |c|)` (docs/semiring.md).

mod common;
mod semiring_common;

use mmsb_core::semiring::{OrAnd, Semiring, SemiringKind};
use mmsb_core::{with_semiring, Error};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use semiring_common::{close, Domain, TestElem};

fn check_laws<S: Semiring + Default>(kind: SemiringKind, seed: u64) -> Result<(), String>
where
    S::Elem: TestElem,
{
    let s = S::default();
    let p = s.properties();
    let mut rng = StdRng::seed_from_u64(seed);
    let draw = |rng: &mut StdRng| S::Elem::draw(rng, kind, Domain::Laws);
    let (zero, one) = (s.zero(), s.one());
    for _ in 0..64 {
        let (a, b, c) = (draw(&mut rng), draw(&mut rng), draw(&mut rng));
        let slack = if p.exact {
            0.0
        } else {
            8.0 * S::Elem::EPS
                * (1.0 + a.to_f64().abs())
                * (1.0 + b.to_f64().abs())
                * (1.0 + c.to_f64().abs())
        };
        let ctx = || format!("{kind:?} a={a:?} b={b:?} c={c:?}");
        let approx = |l: S::Elem, r: S::Elem, law: &str| -> Result<(), String> {
            if close(l, r, slack) {
                Ok(())
            } else {
                Err(format!("{law}: {l:?} != {r:?} for {}", ctx()))
            }
        };
        let exact = |l: S::Elem, r: S::Elem, law: &str| -> Result<(), String> {
            if l == r {
                Ok(())
            } else {
                Err(format!("{law}: {l:?} != {r:?} for {}", ctx()))
            }
        };
        approx(
            s.add(s.add(a, b), c),
            s.add(a, s.add(b, c)),
            "add associative",
        )?;
        exact(s.add(a, b), s.add(b, a), "add commutative")?;
        exact(s.add(a, zero), a, "zero is a right identity of add")?;
        exact(s.add(zero, a), a, "zero is a left identity of add")?;
        approx(
            s.mul(s.mul(a, b), c),
            s.mul(a, s.mul(b, c)),
            "mul associative",
        )?;
        exact(s.mul(a, one), a, "one is a right identity of mul")?;
        exact(s.mul(one, a), a, "one is a left identity of mul")?;
        exact(s.mul(a, zero), zero, "zero annihilates on the right")?;
        exact(s.mul(zero, a), zero, "zero annihilates on the left")?;
        approx(
            s.mul(a, s.add(b, c)),
            s.add(s.mul(a, b), s.mul(a, c)),
            "mul distributes over add on the left",
        )?;
        approx(
            s.mul(s.add(b, c), a),
            s.add(s.mul(b, a), s.mul(c, a)),
            "mul distributes over add on the right",
        )?;
        if p.idempotent_add {
            exact(s.add(a, a), a, "add idempotent")?;
        }
        match s.sub(a, b) {
            Some(d) => approx(s.add(d, b), a, "(a - b) + b = a")?,
            None if p.has_subtraction => return Err(format!("{kind:?}: sub is None")),
            None => {}
        }
        if let Some(t) = s.terminal() {
            exact(s.add(a, t), t, "terminal absorbs add")?;
            exact(s.add(t, a), t, "terminal absorbs add (left)")?;
        }
    }
    Ok(())
}

fn all_pairs() -> Vec<(SemiringKind, mmsb_core::DType)> {
    SemiringKind::ALL
        .into_iter()
        .flat_map(|k| k.dtypes().into_iter().map(move |d| (k, d)))
        .collect()
}

proptest! {
    #![proptest_config(common::config(48))]

    #[test]
    fn every_builtin_satisfies_the_semiring_laws(seed in any::<u64>()) {
        for (k, d) in all_pairs() {
            let r = with_semiring!(k, d, |S| Ok::<_, Error>(check_laws::<S>(k, seed)))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            r.map_err(|m| TestCaseError::fail(format!("{} over {}: {m}", k.name(), d.name())))?;
        }
    }

    #[test]
    fn or_and_over_rust_bool_satisfies_the_laws(a: bool, b: bool, c: bool) {
        let s = OrAnd::<bool>::new();
        prop_assert_eq!(s.add(s.add(a, b), c), s.add(a, s.add(b, c)));
        prop_assert_eq!(s.mul(s.mul(a, b), c), s.mul(a, s.mul(b, c)));
        prop_assert_eq!(s.mul(a, s.add(b, c)), s.add(s.mul(a, b), s.mul(a, c)));
        prop_assert_eq!(s.add(a, s.zero()), a);
        prop_assert_eq!(s.mul(a, s.one()), a);
        prop_assert_eq!(s.mul(a, s.zero()), s.zero());
    }
}

#[test]
fn every_supported_pair_is_exercised() {
    // 7 + 7 + 4 + 7 + 7 + 2: the table of docs/semiring.md.
    assert_eq!(all_pairs().len(), 34);
}

//! Merging composes applies: `apply(merge(a, b)) == apply(b) ∘ apply(a)`, and
//! merge is associative in effect:
//! `apply(merge(merge(a, b), c)) == apply(merge(a, merge(b, c)))`.
//! Every apply here is `apply_reference`, and every merge result is valid.

mod common;

use common::*;
use mmsb_core::delta_merge::merge;
use mmsb_core::{Delta, PageId};
use proptest::prelude::*;

fn page_and_deltas(n: usize) -> impl Strategy<Value = (Vec<u8>, Vec<Delta>)> {
    (1usize..700, any::<u64>()).prop_flat_map(move |(size, seed)| {
        (
            Just(bytes(size, seed)),
            proptest::collection::vec(arb_delta_in(size), n),
        )
    })
}

fn applied(page: &[u8], ds: &[&Delta]) -> Vec<u8> {
    let mut p = page.to_vec();
    for d in ds {
        apply_ref(&mut p, d);
    }
    p
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn merge_equals_sequential_apply((page, ds) in page_and_deltas(2)) {
        let (a, b) = (&ds[0], &ds[1]);
        let m = merge(a, b).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(m.validate(page.len() as u64).is_ok());
        prop_assert_eq!(applied(&page, &[&m]), applied(&page, &[a, b]));
    }

    #[test]
    fn merge_is_associative((page, ds) in page_and_deltas(3)) {
        let (a, b, c) = (&ds[0], &ds[1], &ds[2]);
        let fail = |e: mmsb_core::Error| TestCaseError::fail(e.to_string());
        let left = merge(&merge(a, b).map_err(fail)?, c).map_err(fail)?;
        let right = merge(a, &merge(b, c).map_err(fail)?).map_err(fail)?;
        let seq = applied(&page, &[a, b, c]);
        prop_assert_eq!(applied(&page, &[&left]), seq.clone());
        prop_assert_eq!(applied(&page, &[&right]), seq);
    }
}

#[test]
fn merge_of_different_pages_is_rejected() {
    let a = make_delta(Shape::Dense, 0, 4, 1);
    let b = Delta {
        page: PageId(2),
        ..make_delta(Shape::Dense, 0, 4, 2)
    };
    assert!(merge(&a, &b).is_err());
}

//! Every available apply kernel writes exactly what `apply_reference` writes:
//! random pages, ranges with unaligned starts and ends and lengths that are not
//! a multiple of 64, masks that are empty, full, random at any density, made of
//! runs or of zero / all-ones / random words, dense and sparse payloads.

mod common;

use common::*;
use mmsb_core::apply::{apply_masked, apply_reference, apply_sparse, apply_with, Kernel};
use mmsb_core::{Delta, Payload};
use proptest::prelude::*;

fn kernels() -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

fn expected(page: &[u8], d: &Delta) -> Vec<u8> {
    let mut want = page.to_vec();
    apply_ref(&mut want, d);
    want
}

fn check(page: &[u8], d: &Delta) -> Result<(), TestCaseError> {
    let want = expected(page, d);
    let r = d.offset as usize..(d.offset + d.len) as usize;
    for k in kernels() {
        let mut got = page.to_vec();
        apply_with(k, &mut got[r.clone()], d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            got == want,
            "apply_with({}) differs from the reference",
            k.name()
        );
        // The kernel entry points directly (apply_with short-cuts full masks).
        if let Some(m) = &d.mask {
            let mut got = page.to_vec();
            match &d.payload {
                Payload::Dense(src) => apply_masked(k, &mut got[r.clone()], src, m),
                Payload::Sparse(v) => apply_sparse(k, &mut got[r.clone()], v, m),
            }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                got == want,
                "kernel {} differs from the reference",
                k.name()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn kernels_equal_reference((page, d) in arb_page_and_delta(2600)) {
        check(&page, &d)?;
    }

    #[test]
    fn kernels_equal_reference_on_short_ranges((page, d) in arb_page_and_delta(140)) {
        check(&page, &d)?;
    }
}

#[test]
fn scalar_is_always_available_and_best_is_available() {
    assert!(Kernel::Scalar.is_available());
    assert!(Kernel::best().is_available());
}

#[test]
fn unavailable_kernels_are_errors_not_crashes() {
    let d = make_delta(Shape::Masked(MaskKind::Density(50)), 0, 100, 1);
    let mut page = vec![0u8; 100];
    for k in Kernel::ALL.into_iter().filter(|k| !k.is_available()) {
        assert!(apply_with(k, &mut page, &d).is_err());
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn every_word_pattern_at_every_alignment() {
    // Deterministic sweep: each start alignment within a cache line, lengths around
    // block boundaries (8 words = 512 bytes), runs of all-ones words of every length.
    for start in 0..64usize {
        for len in [1usize, 63, 64, 65, 511, 512, 513, 575, 1024 + 37] {
            for kind in [MaskKind::Full, MaskKind::Words, MaskKind::Runs(70)] {
                let page = bytes(start + len + 64, (start * 7 + len) as u64);
                for shape in [Shape::Masked(kind), Shape::Sparse(kind)] {
                    let d = make_delta(shape, start, len, (start ^ len) as u64);
                    check(&page, &d).unwrap();
                }
            }
        }
    }
}

#[test]
fn reference_rejects_mismatched_destination() {
    let d = make_delta(Shape::Dense, 0, 10, 3);
    let mut dst = vec![0u8; 9];
    assert!(apply_reference(&mut dst, &d).is_err());
}

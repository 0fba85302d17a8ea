//! Shared generators for the property tests: pages, masks and deltas; and
//! (in [`dag`]) random page DAGs with their from-scratch oracle.
#![allow(dead_code)]

pub mod dag;
pub mod files;

use mmsb_core::{mask, Delta, PageId};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// The page every generated delta names.
pub const PAGE: PageId = PageId(1);

/// Proptest settings: few cases by default (the suite must stay fast in debug on
/// two cores), `PROPTEST_CASES` for bigger runs, no regression files.
pub fn config(default_cases: u32) -> ProptestConfig {
    let default_cases = if cfg!(miri) { 4 } else { default_cases };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// How a mask is drawn.
#[derive(Clone, Copy, Debug)]
pub enum MaskKind {
    /// No bit set.
    Empty,
    /// Every bit of the range set.
    Full,
    /// Each bit set with the given probability in percent.
    Density(u8),
    /// Each word drawn from {zero, all-ones, random, one bit}, so that blocks of
    /// zero and all-ones words and their boundaries all occur.
    Words,
    /// Alternating runs of set and clear bits, each up to the given length.
    Runs(u16),
}

/// Any mask kind.
pub fn arb_mask_kind() -> impl Strategy<Value = MaskKind> {
    prop_oneof![
        Just(MaskKind::Empty),
        Just(MaskKind::Full),
        (0u8..=100).prop_map(MaskKind::Density),
        Just(MaskKind::Words),
        (1u16..=600).prop_map(MaskKind::Runs),
    ]
}

/// A valid mask of `kind` over `len` bytes (no bit past `len`).
pub fn make_mask(kind: MaskKind, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = mask::words_for(len as u64) as usize;
    let mut words = vec![0u64; n];
    match kind {
        MaskKind::Empty => {}
        MaskKind::Full => words.iter_mut().for_each(|w| *w = u64::MAX),
        MaskKind::Density(p) => {
            for i in 0..len {
                if rng.gen_range(0..100u8) < p {
                    mask::set_bit(&mut words, i);
                }
            }
        }
        MaskKind::Words => {
            for w in words.iter_mut() {
                *w = match rng.gen_range(0..5) {
                    0 | 1 => 0,
                    2 => u64::MAX,
                    3 => rng.gen(),
                    _ => 1u64 << rng.gen_range(0..64),
                };
            }
        }
        MaskKind::Runs(max) => {
            let mut i = 0usize;
            let mut on = rng.gen_bool(0.5);
            while i < len {
                let run = rng.gen_range(1..=usize::from(max));
                if on {
                    for b in i..(i + run).min(len) {
                        mask::set_bit(&mut words, b);
                    }
                }
                i += run;
                on = !on;
            }
        }
    }
    if let Some(last) = words.last_mut() {
        *last &= mask::last_word_bits(len as u64);
    }
    words
}

/// `n` bytes from `seed`.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// The shape of a payload.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Dense, no mask.
    Dense,
    /// Dense under a mask.
    Masked(MaskKind),
    /// Sparse (packed values) under a mask.
    Sparse(MaskKind),
}

/// Any payload shape.
pub fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        1 => Just(Shape::Dense),
        3 => arb_mask_kind().prop_map(Shape::Masked),
        3 => arb_mask_kind().prop_map(Shape::Sparse),
    ]
}

/// A valid delta of `shape` on [`PAGE`] over `offset..offset + len`.
pub fn make_delta(shape: Shape, offset: usize, len: usize, seed: u64) -> Delta {
    let payload = bytes(len, seed ^ 0x5eed);
    match shape {
        Shape::Dense => Delta::dense(PAGE, offset as u64, payload),
        Shape::Masked(k) => Delta::masked(PAGE, offset as u64, payload, make_mask(k, len, seed)),
        Shape::Sparse(k) => {
            let m = make_mask(k, len, seed);
            let n = mask::count_ones(&m) as usize;
            Delta::sparse(PAGE, offset as u64, len as u64, m, bytes(n, seed ^ 0xfeed))
        }
    }
}

/// A range length: anything up to `max`, or a whole number of mask words.
pub fn arb_len(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![1..=max, (1..=max / 64).prop_map(|w| w * 64)]
}

/// A page size and a range `(offset, len)` inside it, with `len <= max_len`.
pub fn arb_range(max_len: usize) -> impl Strategy<Value = (usize, usize, usize)> {
    (arb_len(max_len), 0usize..200, 0usize..200)
        .prop_map(|(len, before, after)| (before + len + after, before, len))
}

/// A page of `size` bytes and a valid delta inside it.
pub fn arb_page_and_delta(max_len: usize) -> impl Strategy<Value = (Vec<u8>, Delta)> {
    (arb_range(max_len), arb_shape(), any::<u64>()).prop_map(|((size, off, len), shape, seed)| {
        (
            bytes(size, seed ^ 0xaaaa),
            make_delta(shape, off, len, seed),
        )
    })
}

/// A valid delta inside a page of `size` bytes.
pub fn arb_delta_in(size: usize) -> impl Strategy<Value = Delta> {
    (0..size, any::<u64>(), arb_shape()).prop_flat_map(move |(off, seed, shape)| {
        (1..=size - off).prop_map(move |len| make_delta(shape, off, len, seed))
    })
}

/// Applies `d` to `page` with the reference kernel.
pub fn apply_ref(page: &mut [u8], d: &Delta) {
    let r = d.offset as usize..(d.offset + d.len) as usize;
    mmsb_core::apply::apply_reference(&mut page[r], d).expect("reference apply of a valid delta");
}

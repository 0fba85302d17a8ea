//! `PageStore::apply_delta` rejects invalid deltas (a range outside the page, a
//! mask or payload of the wrong length, mask bits past the range, a sparse
//! payload without a mask) with `InvalidArgument`, and leaves the page's bytes
//! and epoch exactly as they were.

mod common;

use common::*;
use mmsb_core::{mask, Delta, ErrorCode, PageLocation, PageStore, Payload};
use proptest::prelude::*;

/// Ways to break a valid delta.
#[derive(Clone, Copy, Debug)]
enum Breakage {
    /// Move the range past the end of the page.
    RangeOutside(u64),
    /// Offset so large that offset + len overflows.
    OffsetOverflow,
    /// One mask word too many or too few.
    MaskWords(bool),
    /// Dense payload one byte longer or shorter than the range.
    DenseLen(bool),
    /// Sparse payload one value more or fewer than the set bits.
    SparseLen(bool),
    /// A mask bit past the end of the range.
    StrayBit(u8),
    /// A sparse payload without a mask.
    SparseNoMask,
    /// An empty range.
    Empty,
}

fn arb_breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        (1u64..1000).prop_map(Breakage::RangeOutside),
        Just(Breakage::OffsetOverflow),
        any::<bool>().prop_map(Breakage::MaskWords),
        any::<bool>().prop_map(Breakage::DenseLen),
        any::<bool>().prop_map(Breakage::SparseLen),
        (0u8..64).prop_map(Breakage::StrayBit),
        Just(Breakage::SparseNoMask),
        Just(Breakage::Empty),
    ]
}

/// `d` broken as `b`, or `None` where `b` does not apply to `d`'s shape.
fn break_delta(mut d: Delta, b: Breakage, page_size: u64) -> Option<Delta> {
    match b {
        Breakage::RangeOutside(by) => d.offset = page_size - d.len + by,
        Breakage::OffsetOverflow => d.offset = u64::MAX - d.len / 2,
        Breakage::MaskWords(more) => {
            let m = d.mask.as_mut()?;
            if more {
                m.push(0);
            } else {
                m.pop();
            }
        }
        Breakage::DenseLen(longer) => match &mut d.payload {
            Payload::Dense(p) if longer => p.push(7),
            Payload::Dense(p) => {
                p.pop();
            }
            Payload::Sparse(_) => return None,
        },
        Breakage::SparseLen(more) => match &mut d.payload {
            Payload::Sparse(p) if more => p.push(7),
            Payload::Sparse(p) => {
                p.pop()?;
            }
            Payload::Dense(_) => return None,
        },
        Breakage::StrayBit(b) => {
            let len = d.len;
            let m = d.mask.as_mut()?;
            let room = 64 - (len % 64);
            if room == 64 {
                return None;
            }
            let bit = len % 64 + u64::from(b) % room;
            *m.last_mut()? |= 1u64 << bit;
            if let Payload::Sparse(p) = &mut d.payload {
                p.push(7);
            }
        }
        Breakage::SparseNoMask => {
            let m = d.mask.take()?;
            if !d.payload.is_sparse() {
                let n = mask::count_ones(&m) as usize;
                d.payload = Payload::Sparse(vec![1; n]);
            }
        }
        Breakage::Empty => {
            d.len = 0;
            d.mask = d.mask.map(|_| Vec::new());
            d.payload = match d.payload {
                Payload::Dense(_) => Payload::Dense(Vec::new()),
                Payload::Sparse(_) => Payload::Sparse(Vec::new()),
            };
        }
    }
    Some(d)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn invalid_deltas_change_nothing(
        size in 1usize..600,
        seed in any::<u64>(),
        shape in arb_shape(),
        at in any::<prop::sample::Index>(),
        span in any::<prop::sample::Index>(),
        breakage in arb_breakage(),
    ) {
        let mut store = PageStore::new();
        let id = store.create_page(size as u64, PageLocation::Cpu).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(id, PAGE);
        // Give the page random bytes and a non-zero epoch.
        store.apply_delta(&Delta::dense(id, 0, bytes(size, seed))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let off = at.index(size);
        let len = 1 + span.index(size - off);
        let good = make_delta(shape, off, len, seed);
        let bad = break_delta(good, breakage, size as u64);
        prop_assume!(bad.is_some());
        let bad = bad.unwrap();
        let before = store.read(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let epoch = store.page(id).map_err(|e| TestCaseError::fail(e.to_string()))?.epoch();
        let rejected = store.stats().deltas_rejected;
        let err = store.apply_delta(&bad);
        prop_assert!(err.is_err(), "accepted {:?} broken as {:?}", bad, breakage);
        prop_assert_eq!(err.unwrap_err().code, ErrorCode::InvalidArgument);
        prop_assert_eq!(store.read(id).map_err(|e| TestCaseError::fail(e.to_string()))?, before);
        prop_assert_eq!(store.page(id).map_err(|e| TestCaseError::fail(e.to_string()))?.epoch(), epoch);
        prop_assert_eq!(store.stats().deltas_rejected, rejected + 1);
    }
}

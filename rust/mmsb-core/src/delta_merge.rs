//! Merging two deltas of one page into one.
//!
//! `merge(a, b)` is the delta that has the effect of applying `a` and then `b`:
//! `apply(merge(a, b)) == apply(b) ∘ apply(a)`. Its range is the hull of both
//! ranges; a byte is written if either delta writes it, with `b`'s value where
//! both do. Merge is associative, so a log compactor or a batch router can fold
//! any run of deltas to one page left to right.
//!
//! The result is dense when at least half of the hull is written, sparse
//! otherwise (sparse stores only the written bytes); the mask is dropped when
//! every byte of the hull is written. Metadata: the result keeps `a`'s expected
//! epoch (the condition under which the whole run may apply), `b`'s source and
//! the later timestamp; intent is `b`'s, or `a`'s when `b` has none.

use crate::delta::{Accumulator, Delta, Payload};
use crate::error::{Error, ErrorCode, Result};
use crate::mask;
use crate::page::MAX_PAGE_SIZE;

/// The delta equivalent to applying `a`, then `b`. Both must be valid and name the same page.
pub fn merge(a: &Delta, b: &Delta) -> Result<Delta> {
    a.validate_shape()?;
    b.validate_shape()?;
    if a.page != b.page {
        return Err(Error::invalid(format!(
            "cannot merge deltas of different pages ({} and {})",
            a.page, b.page
        )));
    }
    if a.accumulator != Accumulator::Overwrite || b.accumulator != Accumulator::Overwrite {
        return Err(Error::invalid("only overwrite deltas can be merged"));
    }
    let a_end = a
        .offset
        .checked_add(a.len)
        .ok_or_else(|| Error::invalid("delta range overflows"))?;
    let b_end = b
        .offset
        .checked_add(b.len)
        .ok_or_else(|| Error::invalid("delta range overflows"))?;
    let lo = a.offset.min(b.offset);
    let hi = a_end.max(b_end);
    // The hull of far-apart deltas can be huge; a delta longer than the largest
    // page can never apply, so refuse it before allocating the hull.
    if hi - lo > MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "merged range {lo}..{hi} ({} bytes) exceeds the largest page ({MAX_PAGE_SIZE})",
            hi - lo
        )));
    }
    let hull = usize::try_from(hi - lo).map_err(|_| Error::invalid("merged range too large"))?;
    let mut bytes = zeroed::<u8>(hull)?;
    let mut words = zeroed::<u64>(mask::words_for(hull as u64) as usize)?;
    for d in [a, b] {
        let shift = (d.offset - lo) as usize;
        let mut k = 0usize;
        for i in 0..d.len as usize {
            let set = d.mask.as_ref().is_none_or(|m| mask::bit(m, i));
            if !set {
                continue;
            }
            bytes[shift + i] = match &d.payload {
                Payload::Dense(p) => p[i],
                Payload::Sparse(p) => {
                    k += 1;
                    p[k - 1]
                }
            };
            mask::set_bit(&mut words, shift + i);
        }
    }
    let written = mask::count_ones(&words);
    let (mask_out, payload) = if written == hull as u64 {
        (None, Payload::Dense(bytes))
    } else if written * 2 >= hull as u64 {
        (Some(words), Payload::Dense(bytes))
    } else {
        let mut values = Vec::with_capacity(written as usize);
        for (i, &b) in bytes.iter().enumerate() {
            if mask::bit(&words, i) {
                values.push(b);
            }
        }
        (Some(words), Payload::Sparse(values))
    };
    Ok(Delta {
        page: a.page,
        offset: lo,
        len: hull as u64,
        mask: mask_out,
        payload,
        accumulator: Accumulator::Overwrite,
        source: b.source.clone(),
        intent: b.intent.clone().or_else(|| a.intent.clone()),
        expected_epoch: a.expected_epoch,
        timestamp_ns: a.timestamp_ns.max(b.timestamp_ns),
    })
}

/// A zeroed vector, or `OutOfMemory` instead of aborting when it cannot be allocated.
fn zeroed<T: Copy + Default>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            format!("cannot allocate a merged delta of {n} elements"),
        )
    })?;
    v.resize(n, T::default());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::apply_reference;
    use crate::page_id::PageId;

    fn apply_at(page: &mut [u8], d: &Delta) {
        let r = d.offset as usize..(d.offset + d.len) as usize;
        apply_reference(&mut page[r], d).unwrap();
    }

    #[test]
    fn later_delta_wins_where_both_write() {
        let a = Delta::dense(PageId(1), 0, vec![1, 1, 1, 1]);
        let b = Delta::masked(PageId(1), 2, vec![2, 2, 2, 2], vec![0b0101]);
        let m = merge(&a, &b).unwrap();
        let mut p1 = vec![9u8; 8];
        let mut p2 = p1.clone();
        apply_at(&mut p1, &a);
        apply_at(&mut p1, &b);
        apply_at(&mut p2, &m);
        assert_eq!(p1, p2);
        assert_eq!(p2, vec![1, 1, 2, 1, 2, 9, 9, 9]);
    }

    #[test]
    fn disjoint_far_ranges_merge_sparse() {
        let a = Delta::dense(PageId(1), 0, vec![1]);
        let b = Delta::dense(PageId(1), 100, vec![2]);
        let m = merge(&a, &b).unwrap();
        assert!(m.payload.is_sparse());
        assert_eq!(m.len, 101);
        m.validate(101).unwrap();
    }

    #[test]
    fn far_apart_deltas_are_rejected_not_allocated() {
        let a = Delta::dense(PageId(1), 0, vec![1]);
        for off in [1u64 << 62, MAX_PAGE_SIZE, u64::MAX - 1] {
            let b = Delta::dense(PageId(1), off, vec![2]);
            for (x, y) in [(&a, &b), (&b, &a)] {
                let e = merge(x, y).unwrap_err();
                assert_eq!(e.code, crate::ErrorCode::InvalidArgument, "{}", e.message);
                assert!(e.message.contains("largest page"), "{}", e.message);
            }
        }
    }

    #[test]
    fn different_pages_do_not_merge() {
        let a = Delta::dense(PageId(1), 0, vec![1]);
        let b = Delta::dense(PageId(2), 0, vec![1]);
        assert!(merge(&a, &b).is_err());
    }
}

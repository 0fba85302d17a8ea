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
use crate::error::{Error, Result};
use crate::mask;

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
    let hull = usize::try_from(hi - lo).map_err(|_| Error::invalid("merged range too large"))?;
    let mut bytes = vec![0u8; hull];
    let mut words = vec![0u64; mask::words_for(hull as u64) as usize];
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
    fn different_pages_do_not_merge() {
        let a = Delta::dense(PageId(1), 0, vec![1]);
        let b = Delta::dense(PageId(2), 0, vec![1]);
        assert!(merge(&a, &b).is_err());
    }
}

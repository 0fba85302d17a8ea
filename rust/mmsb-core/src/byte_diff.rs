//! Where two byte strings differ: the first and the last differing index.
//!
//! The wave's cutoff compares a recomputed page with its old bytes, and a
//! changed page becomes a derived delta over the range from the first to the
//! last differing byte. A byte-at-a-time scan costs a few microseconds per
//! 4 KiB page; here whole blocks are compared as slices (`memcmp`, which is
//! vectorised), and only the first differing block byte by byte.

/// Block size of the cutoff compare: whole blocks are compared as slices
/// (`memcmp`, vectorised), then the first differing block byte by byte.
const DIFF_BLOCK: usize = 64;

/// The first index where `a` and `b` differ (over their common length).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    while i < n {
        let j = (i + DIFF_BLOCK).min(n);
        if a[i..j] != b[i..j] {
            return (i..j).find(|&k| a[k] != b[k]);
        }
        i = j;
    }
    None
}

/// The last index where `a` and `b` differ (over their common length).
pub fn last_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut j = n;
    while j > 0 {
        let i = j.saturating_sub(DIFF_BLOCK);
        if a[i..j] != b[i..j] {
            return (i..j).rev().find(|&k| a[k] != b[k]);
        }
        j = i;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn differences_match_a_byte_scan(
            a in proptest::collection::vec(0u8..4, 0..300),
            flips in proptest::collection::vec((0usize..300, 1u8..4), 0..4),
            extra in 0usize..3,
        ) {
            let mut b = a.clone();
            for (i, x) in flips {
                if let Some(v) = b.get_mut(i) {
                    *v ^= x;
                }
            }
            b.extend(std::iter::repeat_n(9u8, extra));
            let first = a.iter().zip(&b).position(|(x, y)| x != y);
            let last = a.iter().zip(&b).rposition(|(x, y)| x != y);
            prop_assert_eq!(first_difference(&a, &b), first);
            prop_assert_eq!(last_difference(&a, &b), last);
        }
    }
}

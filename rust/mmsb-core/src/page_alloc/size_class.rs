//! Size classes: which slot size serves a request of `len` bytes.
//!
//! Small pages (1 B to [`MAX_SMALL`] = 64 KiB) are served from slabs of fixed
//! slot sizes. Every slot size is a multiple of 64, so with 64-byte aligned
//! chunks every slot is 64-byte aligned (the page alignment, see
//! [`PAGE_ALIGN`](crate::page_buf::PAGE_ALIGN)). The classes are 64, 128, ...,
//! 512 (steps of 64), then four per doubling: 640, 768, 896, 1024, 1280, ...,
//! 65536. Rounding up wastes at most 25% of a slot above 512 B, and nothing at
//! the common power-of-two page sizes (1 KiB, 4 KiB, 64 KiB), which are
//! classes of their own.

/// Largest request served by a size class; larger pages take the mutex path.
pub const MAX_SMALL: usize = 64 * 1024;
/// Granularity (and alignment) of slot sizes.
pub const GRANULE: usize = 64;
/// Number of size classes.
pub const NUM_CLASSES: usize = 8 + 4 * 7;

/// The slot size of class `class` (`class < NUM_CLASSES`).
pub const fn class_size(class: usize) -> usize {
    if class < 8 {
        (class + 1) * GRANULE
    } else {
        let k = class - 8; // 0.. : four per doubling above 512
        let base = 512usize << (k / 4);
        base + (k % 4 + 1) * (base / 4)
    }
}

/// The class serving a request of `len` bytes, `None` when `len` is 0 or
/// larger than [`MAX_SMALL`]. One bounds check and one load from a 1 KiB table
/// (every slot size is a multiple of [`GRANULE`], so all lengths with the same
/// number of granules share a class).
#[inline(always)]
pub fn class_of(len: usize) -> Option<usize> {
    if len.wrapping_sub(1) >= MAX_SMALL {
        return None;
    }
    Some(CLASS_OF_GRANULES[len.div_ceil(GRANULE)] as usize)
}

/// The class of a request of `granules * GRANULE` bytes (entry 0 unused).
static CLASS_OF_GRANULES: [u8; MAX_SMALL / GRANULE + 1] = class_table();

/// Builds [`CLASS_OF_GRANULES`] from [`class_of_slow`].
const fn class_table() -> [u8; MAX_SMALL / GRANULE + 1] {
    let mut t = [0u8; MAX_SMALL / GRANULE + 1];
    let mut g = 1;
    while g < t.len() {
        t[g] = class_of_slow(g * GRANULE) as u8;
        g += 1;
    }
    t
}

/// The class of `len` (1..=[`MAX_SMALL`]) by arithmetic: 64-byte steps up to
/// 512, then quarter steps of each power of two.
const fn class_of_slow(len: usize) -> usize {
    if len <= 512 {
        return (len - 1) / GRANULE;
    }
    // len in (2^b, 2^(b+1)] with b >= 9: quarter steps of 2^b / 4.
    let b = usize::BITS - 1 - (len - 1).leading_zeros(); // floor(log2(len - 1))
    let base = 1usize << b;
    let quarter = (len - base - 1) >> (b - 2); // 0..=3 (base / 4 = 2^(b-2))
    8 + (b as usize - 9) * 4 + quarter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_maps_to_the_smallest_class_that_fits() {
        // Oracle: a linear scan of the class table.
        for len in 1..=MAX_SMALL {
            let want = (0..NUM_CLASSES).find(|&c| class_size(c) >= len);
            assert_eq!(class_of(len), want, "len {len}");
        }
        assert_eq!(class_of(0), None);
        assert_eq!(class_of(MAX_SMALL + 1), None);
    }

    #[test]
    fn classes_are_increasing_multiples_of_the_granule() {
        for c in 0..NUM_CLASSES {
            assert_eq!(class_size(c) % GRANULE, 0);
            if c > 0 {
                assert!(class_size(c) > class_size(c - 1));
            }
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SMALL);
        for pow2 in [
            64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
        ] {
            let c = class_of(pow2).unwrap();
            assert_eq!(class_size(c), pow2, "power of two {pow2} has its own class");
        }
    }
}

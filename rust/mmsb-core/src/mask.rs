//! Bit masks over a delta's byte range.
//!
//! A mask has one bit per byte of the range, packed little-endian into `u64`
//! words: bit `i % 64` of word `i / 64` says whether byte `i` of the range is
//! written. A range of `len` bytes has exactly `ceil(len / 64)` words, and the
//! bits past `len` in the last word must be zero, so that every mask has one
//! encoding (the log, merge and equality rely on it).

use crate::error::{Error, Result};

/// Number of mask words for a range of `len` bytes.
pub fn words_for(len: u64) -> u64 {
    len.div_ceil(64)
}

/// Number of set bits (written bytes).
pub fn count_ones(words: &[u64]) -> u64 {
    words.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Whether byte `i` of the range is written.
#[inline]
pub fn bit(words: &[u64], i: usize) -> bool {
    (words[i / 64] >> (i % 64)) & 1 == 1
}

/// Sets bit `i`.
#[inline]
pub fn set_bit(words: &mut [u64], i: usize) {
    words[i / 64] |= 1u64 << (i % 64);
}

/// The valid-bit pattern of the last word of a range of `len` bytes.
pub fn last_word_bits(len: u64) -> u64 {
    match len % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// Whether the mask selects every byte of a range of `len` bytes.
pub fn is_full(words: &[u64], len: u64) -> bool {
    let n = words.len();
    if n == 0 {
        return len == 0;
    }
    words[..n - 1].iter().all(|&w| w == u64::MAX) && words[n - 1] == last_word_bits(len)
}

/// A mask from one flag per byte.
pub fn from_flags(flags: &[bool]) -> Vec<u64> {
    let mut words = vec![0u64; words_for(flags.len() as u64) as usize];
    for (i, &f) in flags.iter().enumerate() {
        if f {
            set_bit(&mut words, i);
        }
    }
    words
}

/// Checks the word count and that no bit past `len` is set.
pub fn validate(words: &[u64], len: u64) -> Result<()> {
    let want = words_for(len);
    if words.len() as u64 != want {
        return Err(Error::invalid(format!(
            "mask has {} words, a range of {len} bytes needs {want}",
            words.len()
        )));
    }
    if let Some(&last) = words.last() {
        if last & !last_word_bits(len) != 0 {
            return Err(Error::invalid(format!(
                "mask sets bits past the end of the {len}-byte range"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_counts_and_tail_bits() {
        assert_eq!(words_for(0), 0);
        assert_eq!(words_for(1), 1);
        assert_eq!(words_for(64), 1);
        assert_eq!(words_for(65), 2);
        assert_eq!(last_word_bits(3), 0b111);
        assert_eq!(last_word_bits(64), u64::MAX);
    }

    #[test]
    fn validation_rejects_wrong_count_and_stray_bits() {
        assert!(validate(&[0b111], 3).is_ok());
        assert!(validate(&[0b1000], 3).is_err());
        assert!(validate(&[0, 0], 3).is_err());
        assert!(validate(&[], 3).is_err());
    }

    #[test]
    fn full_detection() {
        assert!(is_full(&[0b111], 3));
        assert!(!is_full(&[0b101], 3));
        assert!(is_full(&[u64::MAX, 1], 65));
        assert!(!is_full(&[u64::MAX - 1, 1], 65));
    }

    #[test]
    fn flags_round_trip() {
        let flags: Vec<bool> = (0..130).map(|i| i % 3 == 0).collect();
        let w = from_flags(&flags);
        for (i, &f) in flags.iter().enumerate() {
            assert_eq!(bit(&w, i), f);
        }
        assert_eq!(count_ones(&w), flags.iter().filter(|&&f| f).count() as u64);
    }
}

//! Log compression: run-length coding of repeated bytes.
//!
//! Most of what the log stores is runs: mask words that are all zeros or all
//! ones (`0x00…` / `0xFF…`), zero bytes in payloads of mostly-empty pages,
//! zero padding in fixed-width fields of record headers. A general-purpose
//! compressor would find them too, but would cost a dependency and far more
//! time per byte than the target of replaying at more than 1 GB/s allows. This
//! coder does one thing: it replaces every run of at least [`MIN_RUN`] equal
//! bytes by a token, and copies everything else literally.
//!
//! The stream is a sequence of tokens, each opening with a LEB128 varint `t`:
//!
//! ```text
//! t = n << 1 | 0   followed by n literal bytes
//! t = n << 1 | 1   followed by one byte b: n copies of b
//! ```
//!
//! Compression is per frame and optional (a flag in the frame header), so a
//! store may switch it on or off at any open; a frame is stored compressed only
//! when that makes it smaller. [`decompress`] is given the decoded length from
//! the frame header and never produces more, so a forged stream cannot make it
//! allocate without bound.

use crate::error::{Error, Result};

/// Shortest run worth a token.
pub const MIN_RUN: usize = 6;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| {
            Error::corruption(format!(
                "compressed stream ends inside a varint at byte {pos}"
            ))
        })?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::corruption(format!(
        "varint longer than 10 bytes at byte {pos} of a compressed stream"
    )))
}

/// Compresses `raw`.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    let mut lit_start = 0;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let mut j = i + 1;
        while j < raw.len() && raw[j] == b {
            j += 1;
        }
        if j - i >= MIN_RUN {
            if lit_start < i {
                put_varint(&mut out, ((i - lit_start) as u64) << 1);
                out.extend_from_slice(&raw[lit_start..i]);
            }
            put_varint(&mut out, (((j - i) as u64) << 1) | 1);
            out.push(b);
            lit_start = j;
        }
        i = j;
    }
    if lit_start < raw.len() {
        put_varint(&mut out, ((raw.len() - lit_start) as u64) << 1);
        out.extend_from_slice(&raw[lit_start..]);
    }
    out
}

/// Decompresses `stream`, which must decode to exactly `raw_len` bytes.
pub fn decompress(stream: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw_len.min(stream.len().saturating_mul(64)));
    let mut pos = 0;
    while pos < stream.len() {
        let t = get_varint(stream, &mut pos)?;
        let n = usize::try_from(t >> 1).unwrap_or(usize::MAX);
        if n > raw_len - out.len() {
            return Err(Error::corruption(format!(
                "compressed run of {n} bytes at byte {pos} overflows the frame's {raw_len} bytes"
            )));
        }
        if t & 1 == 1 {
            let b = *stream.get(pos).ok_or_else(|| {
                Error::corruption(format!("compressed stream ends inside a run at byte {pos}"))
            })?;
            pos += 1;
            out.resize(out.len() + n, b);
        } else {
            let lit = stream.get(pos..pos + n).ok_or_else(|| {
                Error::corruption(format!(
                    "compressed literal of {n} bytes at byte {pos} runs past the stream"
                ))
            })?;
            out.extend_from_slice(lit);
            pos += n;
        }
    }
    if out.len() != raw_len {
        return Err(Error::corruption(format!(
            "compressed stream decodes to {} bytes, the frame says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn round_trips_random_runs_and_literals() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let mut raw = Vec::new();
            for _ in 0..rng.gen_range(0..20) {
                let b: u8 = if rng.gen_bool(0.5) { 0 } else { rng.gen() };
                let n = rng.gen_range(1..40);
                if rng.gen_bool(0.5) {
                    raw.extend(std::iter::repeat_n(b, n));
                } else {
                    raw.extend((0..n).map(|_| rng.gen::<u8>()));
                }
            }
            let c = compress(&raw);
            assert_eq!(decompress(&c, raw.len()).unwrap(), raw);
        }
    }

    #[test]
    fn long_zero_runs_shrink() {
        let raw = vec![0u8; 1 << 16];
        let c = compress(&raw);
        assert!(c.len() < 8, "{}", c.len());
    }

    #[test]
    fn forged_streams_are_rejected_not_trusted() {
        let raw = b"abcabcabc000000000000".to_vec();
        let c = compress(&raw);
        assert!(decompress(&c, raw.len() - 1).is_err());
        assert!(decompress(&c, raw.len() + 1).is_err());
        for cut in 0..c.len() {
            assert!(decompress(&c[..cut], raw.len()).is_err());
        }
        assert!(decompress(&[0xff; 12], 10).is_err());
    }
}

//! The versioned binary encoding of a delta (what the log stores).
//!
//! All integers are little-endian. Version 1:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "MDLT"
//! 4       1     version (1)
//! 5       1     flags: bit0 mask present, bit1 payload sparse,
//!               bit2 expected epoch present, bit3 intent present (others 0)
//! 6       1     accumulator (0 = overwrite, 0x80 | kind << 4 | dtype = semiring ⊕)
//! 7       1     reserved (0)
//! 8       8     page id
//! 16      8     range offset
//! 24      8     range length
//! 32      8     timestamp, ns since the Unix epoch
//! 40      8     expected epoch (0 when absent)
//! 48      4     source length S
//! 52      4     intent length I
//! 56      8     payload length P
//! 64      8*W   mask words, W = ceil(length / 64), only if bit0
//! ..      P     payload
//! ..      S     source (UTF-8)
//! ..      I     intent (UTF-8 JSON)
//! ```
//!
//! [`decode`] never trusts a length before checking it against the bytes that
//! remain, so a forged header cannot make it allocate or read out of bounds;
//! anything malformed is [`ErrorCode::Corruption`](crate::ErrorCode::Corruption)
//! naming the byte offset. `docs/format.md` carries the same table.

use crate::delta::{Accumulator, Delta, Payload};
use crate::error::{Error, Result};
use crate::mask;
use crate::page_id::PageId;

/// The four magic bytes that open an encoded delta.
pub const MAGIC: [u8; 4] = *b"MDLT";
/// The encoding version this build writes and reads.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;

const F_MASK: u8 = 1;
const F_SPARSE: u8 = 2;
const F_EPOCH: u8 = 4;
const F_INTENT: u8 = 8;

/// The encoded size of `d`, in bytes.
pub fn encoded_len(d: &Delta) -> usize {
    HEADER_LEN
        + d.mask.as_ref().map_or(0, |m| m.len() * 8)
        + d.payload.bytes().len()
        + d.source.len()
        + d.intent.as_ref().map_or(0, String::len)
}

/// Appends the encoding of `d` to `out`. The delta must pass [`Delta::validate_shape`].
pub fn encode_into(d: &Delta, out: &mut Vec<u8>) -> Result<()> {
    d.validate_shape()?;
    out.reserve(encoded_len(d));
    let mut flags = 0u8;
    if d.mask.is_some() {
        flags |= F_MASK;
    }
    if d.payload.is_sparse() {
        flags |= F_SPARSE;
    }
    if d.expected_epoch.is_some() {
        flags |= F_EPOCH;
    }
    if d.intent.is_some() {
        flags |= F_INTENT;
    }
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    out.push(d.accumulator.code());
    out.push(0);
    out.extend_from_slice(&d.page.0.to_le_bytes());
    out.extend_from_slice(&d.offset.to_le_bytes());
    out.extend_from_slice(&d.len.to_le_bytes());
    out.extend_from_slice(&d.timestamp_ns.to_le_bytes());
    out.extend_from_slice(&d.expected_epoch.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(d.source.len() as u32).to_le_bytes());
    let intent = d.intent.as_deref().unwrap_or("");
    out.extend_from_slice(&(intent.len() as u32).to_le_bytes());
    out.extend_from_slice(&(d.payload.bytes().len() as u64).to_le_bytes());
    if let Some(m) = &d.mask {
        // One resize, then fixed-size chunks: the copy vectorises (a per-word
        // extend_from_slice does not).
        let start = out.len();
        out.resize(start + m.len() * 8, 0);
        for (dst, w) in out[start..].chunks_exact_mut(8).zip(m) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
    }
    out.extend_from_slice(d.payload.bytes());
    out.extend_from_slice(d.source.as_bytes());
    out.extend_from_slice(intent.as_bytes());
    Ok(())
}

/// The encoding of `d`.
pub fn encode(d: &Delta) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    encode_into(d, &mut v)?;
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(Error::corruption(format!(
                "encoded delta truncated at byte {}: {what} needs {n} bytes, {remaining} remain",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(s);
        Ok(u32::from_le_bytes(a))
    }
}

/// Decodes one delta from the front of `buf`; returns it and the bytes consumed.
pub fn decode(buf: &[u8]) -> Result<(Delta, usize)> {
    let mut r = Reader { buf, pos: 0 };
    let head = r.take(8, "header")?;
    if head[0..4] != MAGIC {
        return Err(Error::corruption("encoded delta has a bad magic at byte 0"));
    }
    if head[4] != VERSION {
        return Err(Error::corruption(format!(
            "encoded delta has version {} at byte 4; this build reads version {VERSION}",
            head[4]
        )));
    }
    let flags = head[5];
    if flags & !(F_MASK | F_SPARSE | F_EPOCH | F_INTENT) != 0 {
        return Err(Error::corruption(format!(
            "unknown delta flags {flags:#x} at byte 5"
        )));
    }
    let accumulator = Accumulator::from_u8(head[6])
        .map_err(|e| Error::corruption(format!("at byte 6: {}", e.message)))?;
    if head[7] != 0 {
        return Err(Error::corruption(
            "reserved byte 7 of an encoded delta is not 0",
        ));
    }
    let page = r.u64("page id")?;
    let offset = r.u64("offset")?;
    let len = r.u64("length")?;
    let timestamp_ns = r.u64("timestamp")?;
    let epoch = r.u64("expected epoch")?;
    let source_len = r.u32("source length")?;
    let intent_len = r.u32("intent length")?;
    let payload_len = r.u64("payload length")?;
    if flags & F_INTENT == 0 && intent_len != 0 {
        return Err(Error::corruption(
            "intent length set without the intent flag",
        ));
    }
    let mask = if flags & F_MASK != 0 {
        let words = mask::words_for(len);
        let raw = r.take(words.saturating_mul(8), "mask")?;
        Some(
            raw.chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    u64::from_le_bytes(a)
                })
                .collect(),
        )
    } else {
        None
    };
    let payload_bytes = r.take(payload_len, "payload")?.to_vec();
    let payload = if flags & F_SPARSE != 0 {
        Payload::Sparse(payload_bytes)
    } else {
        Payload::Dense(payload_bytes)
    };
    let source = std::str::from_utf8(r.take(u64::from(source_len), "source")?)
        .map_err(|_| Error::corruption("delta source is not UTF-8"))?
        .to_owned();
    let intent = if flags & F_INTENT != 0 {
        Some(
            std::str::from_utf8(r.take(u64::from(intent_len), "intent")?)
                .map_err(|_| Error::corruption("delta intent is not UTF-8"))?
                .to_owned(),
        )
    } else {
        None
    };
    let d = Delta {
        page: PageId(page),
        offset,
        len,
        mask,
        payload,
        accumulator,
        source,
        intent,
        expected_epoch: (flags & F_EPOCH != 0).then_some(epoch),
        timestamp_ns,
    };
    d.validate_shape()
        .map_err(|e| Error::corruption(format!("decoded delta is malformed: {}", e.message)))?;
    Ok((d, r.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let d = Delta::sparse(PageId(7), 3, 100, vec![0b1011, 1 << 35], vec![1, 2, 3, 4])
            .with_source("unit")
            .with_intent(r#"{"k":[1,2]}"#)
            .unwrap()
            .with_expected_epoch(42);
        let bytes = encode(&d).unwrap();
        assert_eq!(bytes.len(), encoded_len(&d));
        let (back, used) = decode(&bytes).unwrap();
        assert_eq!(back, d);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_truncation_is_detected() {
        let d = Delta::masked(PageId(1), 0, vec![1, 2, 3], vec![0b101]).with_source("s");
        let bytes = encode(&d).unwrap();
        for cut in 0..bytes.len() {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::Corruption);
        }
    }

    #[test]
    fn forged_lengths_do_not_allocate() {
        let d = Delta::dense(PageId(1), 0, vec![1]);
        let mut bytes = encode(&d).unwrap();
        bytes[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());
        let mut bytes = encode(&d).unwrap();
        bytes[5] |= F_MASK;
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());
    }
}

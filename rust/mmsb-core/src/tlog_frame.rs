//! Log frames: one commit, checksummed, as it lies in a segment.
//!
//! Every commit is written as exactly one frame. The frame carries the
//! commit's LSN, its commit timestamp, its records (see
//! [`tlog_record`]) and a CRC32C over everything but the
//! checksum itself. Because a whole commit is one checksummed unit, recovery
//! sees a commit entirely or not at all: there is no partial group to detect.
//!
//! Layout, [`FRAME_HEADER_LEN`] bytes of header then the payload, little-endian:
//!
//! ```text
//! offset size field
//! 0      4    CRC32C of bytes 4 .. 40+L (header after this field, and payload)
//! 4      4    L: stored payload length
//! 8      8    LSN
//! 16     8    commit timestamp, ns since the Unix epoch
//! 24     4    record count
//! 28     4    raw payload length (= L unless compressed)
//! 32     1    frame type (1 = commit)
//! 33     1    flags: bit 0 = payload compressed (tlog_compression)
//! 34     6    reserved, 0
//! 40     L    payload: the records, possibly compressed
//! ```
//!
//! [`parse`] checks structure (lengths within the bytes at hand, known type and
//! flags, zero reserved bytes) before the checksum, and the checksum before it
//! believes anything else, so a damaged frame is reported, never decoded.

use crate::error::{Error, ErrorCode, Result};
use crate::tlog_compression;
use crate::tlog_record::{self, Record};
use crate::tlog_segment::{le32, le64};

/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 40;
/// Frame type of a commit.
pub const TYPE_COMMIT: u8 = 1;
/// Flag: the payload is compressed.
pub const FLAG_COMPRESSED: u8 = 1;
/// Largest payload one frame (one commit) may carry.
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

/// A frame as found in a segment, checksum verified, payload not yet decoded.
#[derive(Clone, Copy, Debug)]
pub struct RawFrame<'a> {
    /// The commit's LSN.
    pub lsn: u64,
    /// The commit timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Number of records.
    pub count: u32,
    /// Length of the decoded payload.
    pub raw_len: u32,
    /// Flags.
    pub flags: u8,
    /// The stored payload.
    pub payload: &'a [u8],
}

impl RawFrame<'_> {
    /// Bytes the frame occupies in its segment.
    pub fn stored_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload.len()
    }

    /// Decodes the records (decompressing if needed).
    pub fn records(&self) -> Result<Vec<Record>> {
        if self.flags & FLAG_COMPRESSED != 0 {
            let raw = tlog_compression::decompress(self.payload, self.raw_len as usize)?;
            tlog_record::decode_all(&raw, self.count)
        } else {
            tlog_record::decode_all(self.payload, self.count)
        }
    }
}

/// Encodes a commit frame. With `compress`, the payload is stored compressed
/// when that makes it smaller.
///
/// The records are encoded straight into the frame buffer, sized exactly up
/// front: the payload bytes are copied once (not into a separate buffer and
/// then again into the frame), which is most of the cost of a large commit.
pub fn encode(lsn: u64, timestamp_ns: u64, records: &[Record], compress: bool) -> Result<Vec<u8>> {
    let size: usize = records.iter().map(Record::encoded_len).sum();
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + size);
    encode_into(&mut out, lsn, timestamp_ns, records, compress)?;
    Ok(out)
}

/// [`encode`] into `out` (cleared first), reusing its allocation.
///
/// The log writer keeps one such buffer for its lifetime, so a commit costs no
/// allocation (a large frame would otherwise be a fresh `mmap` and page faults
/// every time): the records are encoded into it, the CRC32C computed over it,
/// and the buffer handed to one `write`.
pub fn encode_into(
    out: &mut Vec<u8>,
    lsn: u64,
    timestamp_ns: u64,
    records: &[Record],
    compress: bool,
) -> Result<()> {
    let count = u32::try_from(records.len())
        .map_err(|_| Error::invalid("a commit may hold at most 2^32-1 operations"))?;
    let size: usize = records.iter().map(Record::encoded_len).sum();
    out.clear();
    out.reserve(FRAME_HEADER_LEN + size);
    out.resize(FRAME_HEADER_LEN, 0);
    for r in records {
        r.encode_into(out)?;
    }
    let raw_len = u32::try_from(out.len() - FRAME_HEADER_LEN).map_err(|_| {
        Error::invalid(format!(
            "a commit of {} bytes exceeds the 4 GiB frame limit",
            out.len() - FRAME_HEADER_LEN
        ))
    })?;
    let mut flags = 0;
    if compress {
        let c = tlog_compression::compress(&out[FRAME_HEADER_LEN..]);
        if c.len() < raw_len as usize {
            flags |= FLAG_COMPRESSED;
            out.truncate(FRAME_HEADER_LEN);
            out.extend_from_slice(&c);
        }
    }
    let stored = (out.len() - FRAME_HEADER_LEN) as u32;
    out[4..8].copy_from_slice(&stored.to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..24].copy_from_slice(&timestamp_ns.to_le_bytes());
    out[24..28].copy_from_slice(&count.to_le_bytes());
    out[28..32].copy_from_slice(&raw_len.to_le_bytes());
    out[32] = TYPE_COMMIT;
    out[33] = flags;
    let crc = crc32c(&out[4..]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The CRC32C (Castagnoli, as in iSCSI) of `data`: the frame checksum.
///
/// Computed with `crc-fast`, which folds with carry-less multiplication
/// (VPCLMULQDQ on AVX-512 machines) and checksums several times faster than
/// the `crc32` instruction alone; every byte of every commit passes here twice
/// (written, then read back by recovery). The result is the same function, so
/// the format does not change.
pub fn crc32c(data: &[u8]) -> u32 {
    // The CRC-32 variants are returned in the low 32 bits.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Why a frame could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the frame does (a torn write, if at the end of the log).
    Truncated,
    /// The frame is structurally invalid or fails its checksum.
    Bad(Error),
}

/// Parses and verifies the frame at the front of `buf`.
pub fn parse(buf: &[u8]) -> std::result::Result<RawFrame<'_>, FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    let h = &buf[..FRAME_HEADER_LEN];
    let len = le32(&h[4..8]) as usize;
    if h[32] != TYPE_COMMIT {
        return Err(FrameError::Bad(Error::corruption(format!(
            "unknown frame type {} at frame byte 32",
            h[32]
        ))));
    }
    if h[33] & !FLAG_COMPRESSED != 0 || h[34..40].iter().any(|&b| b != 0) {
        return Err(FrameError::Bad(Error::corruption(
            "unknown frame flags or non-zero reserved bytes at frame byte 33",
        )));
    }
    let raw_len = le32(&h[28..32]);
    if h[33] & FLAG_COMPRESSED == 0 && raw_len as usize != len {
        return Err(FrameError::Bad(Error::corruption(
            "uncompressed frame whose raw length differs from its length",
        )));
    }
    let total = FRAME_HEADER_LEN + len;
    if buf.len() < total {
        return Err(FrameError::Truncated);
    }
    let crc = le32(&h[0..4]);
    if crc != crc32c(&buf[4..total]) {
        return Err(FrameError::Bad(Error::new(
            ErrorCode::ChecksumMismatch,
            "frame checksum mismatch",
        )));
    }
    Ok(RawFrame {
        lsn: le64(&h[8..16]),
        timestamp_ns: le64(&h[16..24]),
        count: le32(&h[24..28]),
        raw_len,
        flags: h[33],
        payload: &buf[FRAME_HEADER_LEN..total],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delta, PageId};

    #[test]
    fn frames_round_trip_with_and_without_compression() {
        let recs = vec![Record::Delta(Delta::dense(PageId(1), 0, vec![0; 300]))];
        for c in [false, true] {
            let f = encode(9, 77, &recs, c).unwrap();
            let p = parse(&f).unwrap();
            assert_eq!((p.lsn, p.timestamp_ns, p.count), (9, 77, 1));
            assert_eq!(p.records().unwrap(), recs);
            assert_eq!(p.stored_len(), f.len());
            assert_eq!(p.flags & FLAG_COMPRESSED != 0, c);
        }
    }

    #[test]
    fn uncompressed_frame_is_header_then_records_in_one_exact_buffer() {
        let recs = vec![
            Record::CreatePage {
                id: PageId(1),
                size: 64,
                location: crate::PageLocation::Cpu,
            },
            Record::SetMetadata {
                id: PageId(1),
                key: "k".into(),
                value: vec![1, 2, 3],
            },
            Record::RemoveMetadata {
                id: PageId(1),
                key: "kk".into(),
            },
            Record::SetView {
                id: PageId(1),
                view: None,
            },
            Record::Delta(Delta::masked(PageId(1), 3, vec![7; 10], vec![0b1011]).with_source("s")),
            Record::DeletePage { id: PageId(1) },
        ];
        let raw = tlog_record::encode_all(&recs).unwrap();
        let want: usize = recs.iter().map(Record::encoded_len).sum();
        assert_eq!(
            raw.len(),
            want,
            "Record::encoded_len disagrees with encode_into"
        );
        let f = encode(5, 6, &recs, false).unwrap();
        // Sized exactly: the payload was written once, into its final place.
        assert_eq!(f.capacity(), f.len());
        assert_eq!(&f[FRAME_HEADER_LEN..], &raw[..]);
        let p = parse(&f).unwrap();
        assert_eq!((p.lsn, p.timestamp_ns, p.count), (5, 6, 6));
        assert_eq!(p.records().unwrap(), recs);
    }

    #[test]
    fn a_reused_buffer_encodes_exactly_what_a_fresh_one_does() {
        let mut buf = Vec::new();
        let big = vec![Record::Delta(Delta::dense(PageId(2), 0, vec![9; 5000]))];
        let small = vec![Record::Delta(Delta::dense(PageId(1), 4, vec![3; 10]))];
        for (lsn, recs) in [(1, &big), (2, &small), (3, &big), (4, &small)] {
            for c in [false, true] {
                encode_into(&mut buf, lsn, 7, recs, c).unwrap();
                assert_eq!(buf, encode(lsn, 7, recs, c).unwrap());
                assert_eq!(parse(&buf).unwrap().records().unwrap(), *recs);
            }
        }
    }

    /// CRC32C one bit at a time (reflected polynomial 0x82F63B78): the oracle.
    fn bitwise_crc32c(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn the_fast_checksum_is_crc32c() {
        // The check value of CRC-32C, and agreement with an independent implementation.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let mut x = 0x1234_5678_u64;
        for n in [0usize, 1, 7, 63, 64, 255, 4096, 70_001] {
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(crc32c(&data), bitwise_crc32c(&data), "length {n}");
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let recs = vec![Record::Delta(Delta::dense(PageId(1), 0, vec![5; 20]))];
        let f = encode(3, 4, &recs, true).unwrap();
        for i in 0..f.len() * 8 {
            let mut c = f.clone();
            c[i / 8] ^= 1 << (i % 8);
            match parse(&c) {
                Ok(_) => panic!("flip of bit {i} went unnoticed"),
                Err(FrameError::Truncated | FrameError::Bad(_)) => {}
            }
        }
    }
}

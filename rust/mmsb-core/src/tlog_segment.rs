//! Log segments: the files the transaction log is cut into.
//!
//! The log is a sequence of segment files in `<data dir>/log/`, named by their
//! segment number, zero-padded so names sort in order:
//! `00000000000000000001.tlog`. Each opens with a fixed header and continues
//! with frames (see [`tlog_frame`](crate::tlog_frame)). The writer starts a new
//! segment when the current one would grow past the configured size, and at
//! every open (after recovery has cut any torn tail), so a segment is only ever
//! appended to by one process, once.
//!
//! Header, [`HEADER_LEN`] bytes, little-endian:
//!
//! ```text
//! offset size field
//! 0      8    magic "MMSBTLOG"
//! 8      4    format version (FORMAT_VERSION; 1 is still read)
//! 12     4    reserved, 0
//! 16     8    segment number
//! 24     8    first LSN: the LSN the first frame of this segment has
//! 32     4    CRC32C of bytes 0..32
//! 36     4    reserved, 0
//! ```
//!
//! Version 2 has the same bytes as version 1; it says that frames may hold the
//! dependency-graph records (kinds 7 and 8, see
//! [`tlog_record`](crate::tlog_record)), which a version 1 reader does not
//! know. A version 1 segment is read as it is (whatever record kinds it holds:
//! builds from before the version change wrote graph records into version 1
//! segments). A segment whose header is intact but names a version newer than
//! [`FORMAT_VERSION`] was written by a newer build: reading it stops with
//! [`ErrorCode::Unsupported`](crate::ErrorCode::Unsupported) naming the file
//! and the version, and recovery never cuts it as damage.
//!
//! Segments are deleted only whole, and only when every frame in them is
//! covered by the oldest checkpoint kept (see [`checkpoint`](crate::checkpoint)).

use crate::error::{Error, Result};
use crate::tlog_frame::crc32c;
use std::path::{Path, PathBuf};

/// Magic bytes opening every segment.
pub const MAGIC: [u8; 8] = *b"MMSBTLOG";
/// The log segment format version this build writes (2: frames may hold graph records).
///
/// Checkpoints have their own version, [`checkpoint::FORMAT_VERSION`](crate::checkpoint::FORMAT_VERSION).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest log segment format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Size of a segment header.
pub const HEADER_LEN: usize = 40;
/// File name extension of segments.
pub const EXTENSION: &str = "tlog";

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's number (its file name).
    pub number: u64,
    /// The LSN of the segment's first frame.
    pub first_lsn: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.number.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        let crc = crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header at the front of `buf`.
    ///
    /// A header of a newer format version than this build reads (with an
    /// intact checksum) is an [`ErrorCode::Unsupported`](crate::ErrorCode::Unsupported)
    /// error; any other bad header is corruption.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader> {
        let b = buf.get(..HEADER_LEN).ok_or_else(|| {
            Error::corruption(format!(
                "segment header truncated: {} of {HEADER_LEN} bytes",
                buf.len()
            ))
        })?;
        if b[0..8] != MAGIC {
            return Err(Error::corruption("bad segment magic at byte 0"));
        }
        let crc = le32(&b[32..36]);
        if crc != crc32c(&b[0..32]) {
            return Err(Error::new(
                crate::ErrorCode::ChecksumMismatch,
                "segment header checksum mismatch at byte 32",
            ));
        }
        let version = le32(&b[8..12]);
        if version > FORMAT_VERSION {
            return Err(Error::new(
                crate::ErrorCode::Unsupported,
                format!(
                    "segment format version {version} (header byte 8) is newer than this build \
                     reads ({OLDEST_READABLE_VERSION} to {FORMAT_VERSION}): the log was written \
                     by a newer MMSB"
                ),
            ));
        }
        if version < OLDEST_READABLE_VERSION {
            return Err(Error::corruption(format!(
                "segment format version {version} at byte 8; this build reads \
                 {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
            )));
        }
        if le32(&b[12..16]) != 0 || le32(&b[36..40]) != 0 {
            return Err(Error::corruption("reserved segment header bytes are not 0"));
        }
        Ok(SegmentHeader {
            number: le64(&b[16..24]),
            first_lsn: le64(&b[24..32]),
        })
    }
}

pub(crate) fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The file name of segment `number`.
pub fn file_name(number: u64) -> String {
    format!("{number:020}.{EXTENSION}")
}

/// The path of segment `number` in `log_dir`.
pub fn path(log_dir: &Path, number: u64) -> PathBuf {
    log_dir.join(file_name(number))
}

/// The segment number a file name denotes, if it names a segment.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
    if stem.len() != 20 || !stem.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_every_bit_flip_is_caught() {
        let h = SegmentHeader {
            number: 7,
            first_lsn: 1234,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        for i in 0..HEADER_LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {i}");
        }
    }

    /// `h` encoded with its version field set to `version` (checksum fixed up).
    fn with_version(h: SegmentHeader, version: u32) -> [u8; HEADER_LEN] {
        let mut b = h.encode();
        b[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn this_build_writes_the_current_version_and_reads_every_older_one() {
        let h = SegmentHeader {
            number: 3,
            first_lsn: 9,
        };
        assert_eq!(le32(&h.encode()[8..12]), FORMAT_VERSION);
        for v in OLDEST_READABLE_VERSION..=FORMAT_VERSION {
            assert_eq!(SegmentHeader::decode(&with_version(h, v)).unwrap(), h);
        }
    }

    #[test]
    fn a_newer_version_is_unsupported_and_version_0_is_corrupt() {
        let h = SegmentHeader {
            number: 3,
            first_lsn: 9,
        };
        let e = SegmentHeader::decode(&with_version(h, FORMAT_VERSION + 1)).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Unsupported);
        assert!(
            e.message
                .contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{e}"
        );
        let e = SegmentHeader::decode(&with_version(h, 0)).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Corruption);
    }

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.tlog"), None);
        assert_eq!(parse_file_name("x.tmp"), None);
    }
}

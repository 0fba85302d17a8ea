//! Reading the log back: the scan that recovery, replay and the tools share.
//!
//! [`scan`] walks every segment in order, checks each header and each frame
//! (structure, checksum, LSN continuity: every frame's LSN is one more than
//! the last), and hands each good frame to a visitor. It never trusts a length
//! it has not checked and never panics on any input.
//!
//! Where it meets a frame it cannot accept, it must tell two situations apart:
//!
//! * a **torn tail**: the process or machine died while appending, so the last
//!   segment ends in a partial or garbage frame with nothing valid after it.
//!   The commits in that frame were never acknowledged (acknowledgement waits
//!   for `fsync`), so recovery cuts the log there and reports what it cut.
//! * **corruption inside the log**: a damaged frame followed by valid frames
//!   (or by later segments). Acknowledged commits lie beyond it; cutting would
//!   lose them silently. The scan stops and reports the file and byte offset;
//!   recovery refuses to open unless told explicitly to accept the loss.
//!
//! A segment may also end in zeros: the writer preallocates space ahead of its
//! position (see [`tlog_writer`](crate::tlog_writer)). Where a frame would
//! begin and every remaining byte of the segment is zero, the segment's frames
//! end; that is a clean end, not damage (no frame header is all zero). Zeros
//! followed by anything else are judged like any other bad frame.
//!
//! To decide, after a bad frame the scan searches the rest of the segment for
//! any offset where a structurally valid, checksummed frame with a plausible
//! LSN begins; that search runs only on the error path. Every way the scan
//! ends is described by [`LogEnd`]; the numbers a tool shows are in [`LogSummary`].

use crate::error::{Error, ErrorCode, Result};
use crate::tlog_frame::{self, FrameError, RawFrame, FRAME_HEADER_LEN};
use crate::tlog_record::Record;
use crate::tlog_segment::{self, SegmentHeader, HEADER_LEN};
use crate::vfs::Vfs;
use std::path::{Path, PathBuf};

/// One segment file as the scan found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment number.
    pub number: u64,
    /// Its path.
    pub path: PathBuf,
    /// The first LSN its header promises (0 if the header was unreadable).
    pub first_lsn: u64,
    /// The LSN of its last good frame, if it has any.
    pub last_lsn: Option<u64>,
    /// Its size in bytes.
    pub len: u64,
    /// Bytes of it that hold the header and good frames (in a clean segment,
    /// anything after them is preallocated zeros).
    pub good_len: u64,
}

/// How the scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte of every segment was a good header or frame.
    Clean,
    /// The last segment ends in a partial or damaged frame with nothing valid after it.
    TornTail {
        /// The segment.
        file: PathBuf,
        /// Byte offset of the first bad byte; the segment's good prefix ends here.
        offset: u64,
        /// Bytes from `offset` to the end of the segment.
        bytes: u64,
    },
    /// Damage inside the log: valid data follows it.
    Corrupt {
        /// The segment.
        file: PathBuf,
        /// Byte offset of the damaged frame or header.
        offset: u64,
        /// What is wrong (code Corruption or ChecksumMismatch).
        error: Error,
        /// Bytes of log from `offset` to the end of the log (all later segments included).
        bytes_after: u64,
    },
}

/// Totals of a scan, for tools and reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogSummary {
    /// Segments found.
    pub segments: u64,
    /// Good frames (commits).
    pub frames: u64,
    /// Records in good frames.
    pub records: u64,
    /// First LSN of the log (0 if empty).
    pub first_lsn: u64,
    /// Last good LSN (0 if none).
    pub last_lsn: u64,
    /// Bytes of good frames as stored.
    pub stored_bytes: u64,
    /// Bytes of good frame payloads after decompression, plus headers.
    pub raw_bytes: u64,
    /// Frames stored compressed.
    pub compressed_frames: u64,
}

impl LogSummary {
    /// Raw bytes over stored bytes (1.0 when nothing is compressed or the log is empty).
    pub fn compression_ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            1.0
        } else {
            self.raw_bytes as f64 / self.stored_bytes as f64
        }
    }
}

/// The result of a scan.
#[derive(Clone, Debug)]
pub struct LogScan {
    /// The segments, in order.
    pub segments: Vec<SegmentInfo>,
    /// Totals over good frames.
    pub summary: LogSummary,
    /// How the scan ended.
    pub end: LogEnd,
}

/// Segment numbers and paths in `log_dir`, ascending. A missing directory is an empty log.
pub fn list_segments(vfs: &dyn Vfs, log_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !vfs.exists(log_dir) {
        return Ok(Vec::new());
    }
    let mut v: Vec<(u64, PathBuf)> = vfs
        .list(log_dir)?
        .iter()
        .filter_map(|n| tlog_segment::parse_file_name(n).map(|k| (k, log_dir.join(n))))
        .collect();
    v.sort();
    Ok(v)
}

/// Whether a valid frame with an LSN of at least `min_lsn` starts anywhere in `buf[from..]`.
fn valid_frame_after(buf: &[u8], from: usize, min_lsn: u64) -> bool {
    if buf.len() < FRAME_HEADER_LEN {
        return false;
    }
    (from..=buf.len() - FRAME_HEADER_LEN).any(|q| {
        let lsn = tlog_segment::le64(&buf[q + 8..q + 16]);
        buf[q + 32] == tlog_frame::TYPE_COMMIT
            && lsn >= min_lsn
            && lsn - min_lsn < 1 << 32
            && tlog_frame::parse(&buf[q..]).is_ok()
    })
}

fn with_offset(e: Error, file: &Path, offset: u64) -> Error {
    Error::new(
        e.code,
        format!("{} at byte {offset}: {}", file.display(), e.message),
    )
}

/// Scans the log in `log_dir`, calling `visit` with every good frame and its decoded records, in LSN order.
///
/// An error from `visit` stops the scan and is returned. Damage is not an
/// error here; it is described in [`LogScan::end`].
pub fn scan(
    vfs: &dyn Vfs,
    log_dir: &Path,
    mut visit: impl FnMut(&RawFrame<'_>, Vec<Record>) -> Result<()>,
) -> Result<LogScan> {
    let list = list_segments(vfs, log_dir)?;
    let mut segments = Vec::new();
    let mut summary = LogSummary {
        segments: list.len() as u64,
        ..LogSummary::default()
    };
    let mut expected: Option<u64> = None;
    let mut end = LogEnd::Clean;
    let mut sizes = Vec::with_capacity(list.len());
    for (i, (number, path)) in list.iter().enumerate() {
        let last_segment = i + 1 == list.len();
        let buf = vfs.read(path)?;
        sizes.push(buf.len() as u64);
        let mut info = SegmentInfo {
            number: *number,
            path: path.clone(),
            first_lsn: 0,
            last_lsn: None,
            len: buf.len() as u64,
            good_len: 0,
        };
        let header = SegmentHeader::decode(&buf).and_then(|h| {
            if h.number != *number {
                return Err(Error::corruption(format!(
                    "segment header says number {}, the file name {number}",
                    h.number
                )));
            }
            match expected {
                Some(e) if e != h.first_lsn => Err(Error::corruption(format!(
                    "segment starts at LSN {}, the log before it ends at {}: LSNs are missing",
                    h.first_lsn,
                    e - 1
                ))),
                _ => Ok(h),
            }
        });
        let header = match header {
            Ok(h) => h,
            Err(e) => {
                // A header that never made it to disk whole: the segment was
                // being created when the process died. Only the last may be so.
                if last_segment && buf.len() <= HEADER_LEN + FRAME_HEADER_LEN {
                    end = LogEnd::TornTail {
                        file: path.clone(),
                        offset: 0,
                        bytes: buf.len() as u64,
                    };
                } else {
                    end = LogEnd::Corrupt {
                        file: path.clone(),
                        offset: 0,
                        error: with_offset(e, path, 0),
                        bytes_after: 0,
                    };
                }
                segments.push(info);
                break;
            }
        };
        info.first_lsn = header.first_lsn;
        if summary.first_lsn == 0 {
            summary.first_lsn = header.first_lsn;
        }
        let mut next = header.first_lsn;
        let mut pos = HEADER_LEN;
        let mut stop = false;
        while pos < buf.len() {
            // A frame header is never all zero (its type byte is not), so zeros
            // here are the writer's preallocation; they end the segment cleanly
            // if nothing but zeros follows.
            let head = &buf[pos..buf.len().min(pos + FRAME_HEADER_LEN)];
            if head.iter().all(|&b| b == 0) && buf[pos..].iter().all(|&b| b == 0) {
                break;
            }
            let bad = match tlog_frame::parse(&buf[pos..]) {
                Ok(f) if f.lsn == next => {
                    let rec_count = u64::from(f.count);
                    let records = match f.records() {
                        Ok(r) => r,
                        Err(e) => {
                            end = LogEnd::Corrupt {
                                file: path.clone(),
                                offset: pos as u64,
                                error: with_offset(e, path, pos as u64),
                                bytes_after: 0,
                            };
                            stop = true;
                            break;
                        }
                    };
                    visit(&f, records)?;
                    summary.frames += 1;
                    summary.records += rec_count;
                    summary.last_lsn = f.lsn;
                    summary.stored_bytes += f.stored_len() as u64;
                    summary.raw_bytes += (FRAME_HEADER_LEN + f.raw_len as usize) as u64;
                    if f.flags & tlog_frame::FLAG_COMPRESSED != 0 {
                        summary.compressed_frames += 1;
                    }
                    info.last_lsn = Some(f.lsn);
                    pos += f.stored_len();
                    next += 1;
                    continue;
                }
                Ok(f) => Error::corruption(format!("frame has LSN {}, expected {next}", f.lsn)),
                Err(FrameError::Truncated) => Error::corruption("frame truncated"),
                Err(FrameError::Bad(e)) => e,
            };
            let torn = last_segment && !valid_frame_after(&buf, pos + 1, next);
            end = if torn {
                LogEnd::TornTail {
                    file: path.clone(),
                    offset: pos as u64,
                    bytes: (buf.len() - pos) as u64,
                }
            } else {
                LogEnd::Corrupt {
                    file: path.clone(),
                    offset: pos as u64,
                    error: with_offset(bad, path, pos as u64),
                    bytes_after: 0,
                }
            };
            stop = true;
            break;
        }
        info.good_len = pos as u64;
        segments.push(info);
        if stop {
            break;
        }
        expected = Some(next);
    }
    if let LogEnd::Corrupt {
        offset,
        bytes_after,
        ..
    } = &mut end
    {
        let k = segments.len() - 1;
        *bytes_after = sizes[k].saturating_sub(*offset)
            + list[k + 1..]
                .iter()
                .map(|(_, p)| vfs.read(p).map(|b| b.len() as u64).unwrap_or(0))
                .sum::<u64>();
    }
    // Segments after a stop are still listed, so tools can show and repair them.
    for (number, path) in list.iter().skip(segments.len()) {
        segments.push(SegmentInfo {
            number: *number,
            path: path.clone(),
            first_lsn: 0,
            last_lsn: None,
            len: vfs.read(path).map(|b| b.len() as u64).unwrap_or(0),
            good_len: 0,
        });
    }
    Ok(LogScan {
        segments,
        summary,
        end,
    })
}

impl LogEnd {
    /// The error recovery reports for this end, if it is corruption.
    pub fn corruption_error(&self) -> Option<Error> {
        match self {
            LogEnd::Corrupt { error, .. } => Some(Error::new(
                if error.code == ErrorCode::ChecksumMismatch {
                    ErrorCode::ChecksumMismatch
                } else {
                    ErrorCode::Corruption
                },
                format!(
                    "corruption inside the log: {} (open with recover_past_corruption to keep the log before it and drop the rest)",
                    error.message
                ),
            )),
            _ => None,
        }
    }
}

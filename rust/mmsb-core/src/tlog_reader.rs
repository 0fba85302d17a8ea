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
//! LSN begins; that search runs only on the error path.
//!
//! The scan reads each segment through a window of [`WINDOW`] bytes (larger
//! only for a frame that is larger), reused from segment to segment, so
//! recovery of any log needs bounded memory; only the error path above reads
//! the rest of the damaged segment at once. Every way the scan
//! ends is described by [`LogEnd`]; the numbers a tool shows are in [`LogSummary`].

use crate::error::{Error, ErrorCode, Result};
use crate::tlog_frame::{self, FrameError, RawFrame, FRAME_HEADER_LEN};
use crate::tlog_record::Record;
use crate::tlog_segment::{self, SegmentHeader, HEADER_LEN};
use crate::vfs::{Vfs, VfsReader};
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

/// The size of a file (0 if it cannot be opened: it is only reported).
fn file_len(vfs: &dyn Vfs, path: &Path) -> u64 {
    vfs.open_read(path).map_or(0, |r| r.len())
}

/// How much of a segment the scan reads at a time.
pub const WINDOW: usize = 8 << 20;

/// One segment, read a window at a time: the scan's memory is one window (or
/// one frame, if a frame is larger), not the segment. The buffer is reused
/// from segment to segment.
struct Window {
    /// Bytes read at a time.
    size: usize,
    file: Option<Box<dyn VfsReader>>,
    /// The segment's size.
    len: u64,
    /// `buf[..filled]` holds the file's bytes from offset `base` on.
    buf: Vec<u8>,
    filled: usize,
    base: u64,
}

impl Window {
    fn new(size: usize) -> Window {
        Window {
            size: size.max(1),
            file: None,
            len: 0,
            buf: Vec::new(),
            filled: 0,
            base: 0,
        }
    }

    fn open(&mut self, file: Box<dyn VfsReader>) {
        self.len = file.len();
        self.file = Some(file);
        self.filled = 0;
        self.base = 0;
    }

    /// The bytes from `pos` on that are at hand: at least `n` of them, unless
    /// the file ends first (then all up to its end).
    fn at(&mut self, pos: u64, n: usize) -> std::io::Result<&[u8]> {
        let want_end = pos.saturating_add(n as u64).min(self.len);
        let have_end = self.base + self.filled as u64;
        if pos < self.base || want_end > have_end {
            self.refill(pos, n)?;
        }
        let from = usize::try_from(pos - self.base).unwrap_or(usize::MAX);
        Ok(&self.buf[from.min(self.filled)..self.filled])
    }

    /// Moves the window to start at `pos` and reads at least `n` bytes (a
    /// whole window if there is that much), keeping what it already has.
    fn refill(&mut self, pos: u64, n: usize) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let have_end = self.base + self.filled as u64;
        let keep = if pos >= self.base && pos <= have_end {
            let from = (pos - self.base) as usize;
            self.buf.copy_within(from..self.filled, 0);
            self.filled - from
        } else {
            0
        };
        self.base = pos;
        self.filled = keep;
        let take = usize::try_from(self.len.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(n.max(self.size));
        if self.buf.len() < take {
            self.buf.resize(take, 0);
        }
        while self.filled < take {
            let k = file.read_at(pos + self.filled as u64, &mut self.buf[self.filled..take])?;
            if k == 0 {
                // The file is shorter than it was: what is here is all there is.
                self.len = pos + self.filled as u64;
                break;
            }
            self.filled += k;
        }
        Ok(())
    }

    /// Whether every byte from `pos` to the end of the segment is zero.
    fn rest_is_zero(&mut self, mut pos: u64) -> std::io::Result<bool> {
        while pos < self.len {
            let s = self.at(pos, 1)?;
            if s.is_empty() {
                break;
            }
            if s.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            pos += s.len() as u64;
        }
        Ok(true)
    }
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
/// error here; it is described in [`LogScan::end`]. A segment of a newer
/// format version than this build reads is an error
/// ([`ErrorCode::Unsupported`], naming the file and the version): it is not
/// damage, and must not be cut.
pub fn scan(
    vfs: &dyn Vfs,
    log_dir: &Path,
    visit: impl FnMut(&RawFrame<'_>, Vec<Record>) -> Result<()>,
) -> Result<LogScan> {
    scan_windowed(vfs, log_dir, WINDOW, visit)
}

/// [`scan`] reading `window` bytes at a time.
fn scan_windowed(
    vfs: &dyn Vfs,
    log_dir: &Path,
    window: usize,
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
    let mut win = Window::new(window);
    for (i, (number, path)) in list.iter().enumerate() {
        let last_segment = i + 1 == list.len();
        win.open(vfs.open_read(path)?);
        let file_len = win.len;
        sizes.push(file_len);
        let mut info = SegmentInfo {
            number: *number,
            path: path.clone(),
            first_lsn: 0,
            last_lsn: None,
            len: file_len,
            good_len: 0,
        };
        let header = SegmentHeader::decode(win.at(0, HEADER_LEN)?).and_then(|h| {
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
            // An intact header of a newer format: not damage, and nothing to
            // cut. The caller must stop (a newer build owns this log).
            Err(e) if e.code == ErrorCode::Unsupported => return Err(with_offset(e, path, 0)),
            Err(e) => {
                // A header that never made it to disk whole: the segment was
                // being created when the process died. Only the last may be so.
                if last_segment && file_len <= (HEADER_LEN + FRAME_HEADER_LEN) as u64 {
                    end = LogEnd::TornTail {
                        file: path.clone(),
                        offset: 0,
                        bytes: file_len,
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
        let mut pos = HEADER_LEN as u64;
        let mut stop = false;
        while pos < file_len {
            let (zero_head, stored) = {
                let s = win.at(pos, FRAME_HEADER_LEN)?;
                let head = &s[..s.len().min(FRAME_HEADER_LEN)];
                let stored = (head.len() == FRAME_HEADER_LEN)
                    .then(|| u64::from(tlog_segment::le32(&head[4..8])));
                (head.iter().all(|&b| b == 0), stored)
            };
            // A frame header is never all zero (its type byte is not), so zeros
            // here are the writer's preallocation; they end the segment cleanly
            // if nothing but zeros follows.
            if zero_head && win.rest_is_zero(pos)? {
                break;
            }
            // The whole frame, as far as the file has it (a damaged length
            // asks for at most the rest of the segment).
            let rest = file_len - pos;
            let need = stored.map_or(rest, |l| (FRAME_HEADER_LEN as u64 + l).min(rest));
            let bad = match tlog_frame::parse(win.at(pos, need as usize)?) {
                Ok(f) if f.lsn == next => {
                    let rec_count = u64::from(f.count);
                    let records = match f.records() {
                        Ok(r) => r,
                        Err(e) => {
                            end = LogEnd::Corrupt {
                                file: path.clone(),
                                offset: pos,
                                error: with_offset(e, path, pos),
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
                    pos += f.stored_len() as u64;
                    next += 1;
                    continue;
                }
                Ok(f) => Error::corruption(format!("frame has LSN {}, expected {next}", f.lsn)),
                Err(FrameError::Truncated) => Error::corruption("frame truncated"),
                Err(FrameError::Bad(e)) => e,
            };
            // Only on this error path is the rest of the segment read at once.
            let torn = last_segment
                && !valid_frame_after(win.at(pos, (file_len - pos) as usize)?, 1, next);
            end = if torn {
                LogEnd::TornTail {
                    file: path.clone(),
                    offset: pos,
                    bytes: file_len - pos,
                }
            } else {
                LogEnd::Corrupt {
                    file: path.clone(),
                    offset: pos,
                    error: with_offset(bad, path, pos),
                    bytes_after: 0,
                }
            };
            stop = true;
            break;
        }
        info.good_len = pos;
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
                .map(|(_, p)| file_len(vfs, p))
                .sum::<u64>();
    }
    // Segments after a stop are still listed, so tools can show and repair them.
    for (number, path) in list.iter().skip(segments.len()) {
        segments.push(SegmentInfo {
            number: *number,
            path: path.clone(),
            first_lsn: 0,
            last_lsn: None,
            len: file_len(vfs, path),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_fs::FaultFs;
    use crate::tlog_writer::TLogWriter;
    use crate::{Delta, PageId};
    use std::sync::Arc;

    /// A reader that returns at most 7 bytes per call, as a real `read` may.
    #[derive(Debug)]
    struct Dribble(Vec<u8>);

    impl VfsReader for Dribble {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let start = (offset as usize).min(self.0.len());
            let n = buf.len().min(7).min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
    }

    #[test]
    fn the_window_serves_exactly_the_file_bytes_whatever_the_reads() {
        let mut bytes: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        bytes.extend_from_slice(&[0; 3000]);
        let mut x = 99u64;
        for size in [1, 16, 1000, 1 << 20] {
            let mut w = Window::new(size);
            w.open(Box::new(Dribble(bytes.clone())));
            for _ in 0..500 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let pos = (x >> 33) % 8100;
                let n = ((x >> 20) % 3000) as usize;
                let got = w.at(pos, n).unwrap().to_vec();
                let p = (pos as usize).min(bytes.len());
                let want = &bytes[p..];
                assert!(got.len() >= n.min(want.len()), "short window at {pos}+{n}");
                assert_eq!(&got[..], &want[..got.len()], "window at {pos}, size {size}");
                let zero = want.iter().all(|&b| b == 0);
                assert_eq!(w.rest_is_zero(pos).unwrap(), zero, "zero rest at {pos}");
            }
        }
    }

    #[test]
    fn small_windows_scan_the_same_log_as_one_big_read() {
        let fs = FaultFs::new();
        let dir = Path::new("/log");
        fs.create_dir_all(dir).unwrap();
        let mut w = TLogWriter::create(Arc::new(fs.clone()), dir, 1, 1, 200 << 10, true).unwrap();
        for lsn in 1..=60u64 {
            let len = 100 + (lsn as usize * 7919) % 20_000;
            let payload: Vec<u8> = (0..len).map(|i| (i as u64 * lsn % 256) as u8).collect();
            let recs = vec![Record::Delta(Delta::dense(PageId(1), 0, payload))];
            w.append(lsn, lsn, &recs).unwrap();
        }
        let seg = |n| tlog_segment::path(dir, n);
        // A zero tail on the last segment, then a torn frame variant.
        let last = list_segments(&fs, dir).unwrap().last().unwrap().0;
        let mut tail = fs.read(&seg(last)).unwrap();
        tail.extend_from_slice(&[0; 5000]);
        fs.put(&seg(last), tail.clone());
        let run = |window| {
            let mut seen = Vec::new();
            let scan = scan_windowed(&fs, dir, window, |f, r| {
                seen.push((f.lsn, r));
                Ok(())
            })
            .unwrap();
            (seen, scan.summary, scan.end)
        };
        let whole = run(usize::MAX >> 1);
        assert_eq!(whole.0.len(), 60);
        assert_eq!(whole.2, LogEnd::Clean);
        for window in [1, 40, 1000, 4096, 65_536] {
            assert!(run(window) == whole, "window {window} scans differently");
        }
        let n = tail.len();
        tail[n - 6000] ^= 1;
        fs.put(&seg(last), tail);
        let torn = run(usize::MAX >> 1);
        assert!(matches!(torn.2, LogEnd::TornTail { .. }), "{:?}", torn.2);
        for window in [1, 40, 4096] {
            assert!(run(window) == torn, "window {window} scans differently");
        }
    }
}

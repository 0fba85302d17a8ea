//! Appending to the log, and group commit.
//!
//! [`TLogWriter`] owns the segment being written: it encodes each commit as
//! one frame, appends it, and rolls to a new segment when the current one
//! would pass its size limit (syncing the old one first, so every segment but
//! the last is always fully durable). Appends happen in LSN order under the
//! store's commit lock; they reach the operating system, not yet the disk.
//! Each commit costs one positional write of one frame, encoded into a buffer
//! the writer reuses (no allocation, no second copy of the payloads).
//!
//! Under immediate durability the writer also *preallocates*: it keeps zeros
//! written ahead of its position, so a commit's `fdatasync` flushes only the
//! frame's data and not a grown file size as well, which makes every sync
//! cheaper (see [`TLogWriter::set_preallocate`]). Recovery reads an all-zero
//! rest of a segment as its end, and a segment being rolled is trimmed to its
//! frames first.
//!
//! Under immediate durability the writer also writes *directly* where the
//! file system allows it ([`TLogWriter::set_direct_io`]): each segment is
//! reopened with `O_DIRECT`, an append only copies its frame into a
//! user-space, block-aligned buffer, and the sync of the group-commit leader
//! writes the pending blocks and makes them durable in one system call (see
//! [`tlog_direct`]). Where the file system refuses direct
//! I/O (tmpfs), the writer keeps the buffered path; [`TLogWriter::is_direct`]
//! says which one runs. Both write the same bytes.
//!
//! [`GroupSync`] makes them durable. A committer under immediate durability
//! calls [`GroupSync::wait_durable`] with its LSN after releasing the commit
//! lock. If no `fsync` is running, it becomes the *leader*: it notes the
//! highest LSN written so far, syncs the file, and wakes everyone. Committers
//! arriving while a sync runs are *followers*: they wait on the condition
//! variable, and a single next sync covers all of them. Under load one `fsync`
//! acknowledges many commits, which is what lets immediate durability keep up
//! with throughput targets.
//!
//! With exactly two committers that alone would give one flush per commit:
//! while one syncs, the other waits, then syncs alone while the first prepares
//! its next commit. So a leader applies a *commit delay* (PostgreSQL's
//! `commit_delay`, made adaptive): if the last sync saw other committers
//! (followers waited on it, or it covered commits besides its leader's), the
//! new leader waits up to a quarter of the last sync's duration (at most
//! 100 µs) for the log to grow before it syncs; an append wakes it at once. A
//! lone committer never waits, and a delay that finds no one turns itself
//! off for the next sync. Durability is unchanged: a commit is acknowledged
//! only once a sync that covers it has returned.
//!
//! A failed `fsync` is sticky: after it, the kernel may have dropped the dirty
//! pages, so no later sync can prove earlier writes durable. [`GroupSync`]
//! records the failure, every waiter gets the error, and the store refuses
//! further writes until it is reopened (recovery then finds out what made it).

use crate::error::{Error, ErrorCode, Result};
use crate::tlog_direct::{self, DirectLogFile};
use crate::tlog_frame;
use crate::tlog_record::Record;
use crate::tlog_segment::{self, SegmentHeader};
use crate::vfs::{Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Adds the operation and path to an I/O error.
pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    let base: Error = e.into();
    Error::new(
        base.code,
        format!("{what} {}: {}", path.display(), base.message),
    )
}

/// Segments are preallocated only once this many bytes were written to them,
/// so small logs (tests, short sessions) carry no zero tail.
pub const PREALLOCATE_AFTER: u64 = 1 << 20;
/// How far ahead of the write position a preallocating writer zero-fills.
pub const PREALLOCATE_CHUNK: u64 = 4 << 20;
/// Preallocation stops while the running average frame is this large or larger:
/// a sync of large frames is paid in bandwidth, not latency, and writing every
/// byte twice (zeros, then the frame) costs more than the size update it saves
/// (measured: 1.55x the synced commits/s at 2 KiB frames, 1.24x at 64 KiB,
/// 0.83x at 128 KiB, 0.74x at 512 KiB; see docs/benchmarks.md).
pub const PREALLOCATE_MAX_AVG_FRAME: u64 = 96 << 10;
/// The frame buffer is kept for the next commit only up to this capacity.
const FRAME_BUFFER_KEPT: usize = 8 << 20;
/// Zeros written per call while preallocating.
const ZERO_BLOCK: usize = 256 << 10;

/// Writes frames to the newest segment; see the module docs.
#[derive(Debug)]
pub struct TLogWriter {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    file: Arc<dyn VfsFile>,
    number: u64,
    /// Where the next frame goes: header plus the frames written so far.
    len: u64,
    /// Bytes of the segment that exist on disk (frames, then zeros); at least `len`.
    allocated: u64,
    limit: u64,
    compress: bool,
    preallocate: bool,
    /// Whether segments are written with direct I/O (asked for, and not refused).
    direct: bool,
    /// The current segment's header, which a direct file rewrites with its first block.
    header: Vec<u8>,
    /// Running average of the frame size (weight 1/8 for the newest).
    avg_frame: u64,
    next_lsn: u64,
    bytes_written: u64,
    /// The frame being written, reused from commit to commit.
    frame: Vec<u8>,
    zeros: Vec<u8>,
}

impl TLogWriter {
    /// Creates segment `number`, whose first frame will have `first_lsn`, and
    /// makes the new file and its directory entry durable.
    pub fn create(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        number: u64,
        first_lsn: u64,
        limit: u64,
        compress: bool,
    ) -> Result<TLogWriter> {
        let (file, header) = TLogWriter::create_segment(vfs.as_ref(), dir, number, first_lsn)?;
        let len = header.len() as u64;
        Ok(TLogWriter {
            vfs,
            dir: dir.to_path_buf(),
            file,
            number,
            len,
            allocated: len,
            limit,
            compress,
            preallocate: false,
            direct: false,
            header,
            avg_frame: 0,
            next_lsn: first_lsn,
            bytes_written: 0,
            frame: Vec::new(),
            zeros: Vec::new(),
        })
    }

    fn create_segment(
        vfs: &dyn Vfs,
        dir: &Path,
        number: u64,
        first_lsn: u64,
    ) -> Result<(Arc<dyn VfsFile>, Vec<u8>)> {
        let path = tlog_segment::path(dir, number);
        let file = vfs
            .create(&path)
            .map_err(|e| io_err("creating segment", &path, e))?;
        let header = SegmentHeader { number, first_lsn }.encode();
        file.write_at(0, &header)
            .map_err(|e| io_err("writing segment header", &path, e))?;
        file.sync()
            .map_err(|e| io_err("syncing segment", &path, e))?;
        vfs.sync_dir(dir)
            .map_err(|e| io_err("syncing directory", dir, e))?;
        Ok((file, header.to_vec()))
    }

    /// Asks for direct I/O (off by default): the current segment, if nothing
    /// was appended to it yet, and every later one are reopened with
    /// [`Vfs::open_direct`] and written through a [`DirectLogFile`]. Where the
    /// file system refuses, the writer stays buffered for good (the choice is
    /// made once, at open); [`TLogWriter::is_direct`] tells which. Call it
    /// before handing [`TLogWriter::file`] to a [`GroupSync`].
    pub fn set_direct_io(&mut self, on: bool) {
        self.direct = on;
        if on && self.len == self.header.len() as u64 && !self.file.is_direct() {
            self.go_direct();
        }
    }

    /// Whether frames are written with direct I/O now.
    pub fn is_direct(&self) -> bool {
        self.file.is_direct()
    }

    /// Reopens the fresh current segment for direct I/O, or turns direct I/O off.
    fn go_direct(&mut self) {
        let path = tlog_segment::path(&self.dir, self.number);
        let base = tlog_direct::align_down(self.len) as usize;
        let opened = self
            .vfs
            .open_direct(&path)
            .and_then(|f| DirectLogFile::new(f, self.len, &self.header[base..self.len as usize]));
        match opened {
            Ok(f) => self.file = Arc::new(f),
            // Refused (tmpfs: EINVAL) or failed: the buffered file keeps working.
            Err(_) => self.direct = false,
        }
    }

    /// Turns preallocation on or off (off by default).
    ///
    /// A preallocating writer keeps up to [`PREALLOCATE_CHUNK`] bytes of zeros
    /// written ahead of its write position (once a segment holds
    /// [`PREALLOCATE_AFTER`] bytes, and while frames average less than
    /// [`PREALLOCATE_MAX_AVG_FRAME`]), so frames overwrite space the file already
    /// has: the `fdatasync` that makes a commit durable then flushes the data
    /// alone, not also the file's grown size. That makes each sync markedly
    /// cheaper, which is what immediate durability pays per commit; buffered
    /// durability syncs rarely and would only pay for the zeros. Readers take
    /// an all-zero rest of a segment as its end (see
    /// [`tlog_reader`](crate::tlog_reader)).
    pub fn set_preallocate(&mut self, on: bool) {
        self.preallocate = on;
    }

    /// Appends the frame of commit `lsn` (which must be the next LSN). Returns its size.
    pub fn append(&mut self, lsn: u64, timestamp_ns: u64, records: &[Record]) -> Result<u64> {
        if lsn != self.next_lsn {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("log append of LSN {lsn}, expected {}", self.next_lsn),
            ));
        }
        let mut frame = std::mem::take(&mut self.frame);
        let r = tlog_frame::encode_into(&mut frame, lsn, timestamp_ns, records, self.compress)
            .and_then(|()| self.write_frame(&frame));
        self.frame = frame;
        // A huge commit must not pin its buffer for the writer's lifetime.
        if self.frame.capacity() > FRAME_BUFFER_KEPT {
            self.frame = Vec::new();
        }
        r
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<u64> {
        let n = frame.len() as u64;
        if self.len > tlog_segment::HEADER_LEN as u64 && self.len + n > self.limit {
            self.roll()?;
        }
        self.file.write_at(self.len, frame).map_err(|e| {
            io_err(
                "appending to",
                &tlog_segment::path(&self.dir, self.number),
                e,
            )
        })?;
        self.len += n;
        self.allocated = self.allocated.max(self.len);
        self.bytes_written += n;
        self.next_lsn += 1;
        self.avg_frame = self.avg_frame - self.avg_frame / 8 + n / 8;
        if self.preallocate
            && self.avg_frame < PREALLOCATE_MAX_AVG_FRAME
            && self.len >= PREALLOCATE_AFTER
            && self.allocated < self.len + PREALLOCATE_CHUNK / 2
        {
            self.zero_ahead();
        }
        Ok(n)
    }

    /// Zero-fills the segment up to [`PREALLOCATE_CHUNK`] past the write
    /// position (not past the segment limit); called when less than half a
    /// chunk is left. Preallocation only makes syncs
    /// cheaper, so a failure here fails no commit: the writer stops
    /// preallocating this segment, and the next append reports any real trouble.
    fn zero_ahead(&mut self) {
        let target = (self.len + PREALLOCATE_CHUNK).min(self.limit.max(self.len));
        if self.zeros.is_empty() {
            self.zeros = vec![0; ZERO_BLOCK];
        }
        while self.allocated < target {
            let k = (target - self.allocated).min(ZERO_BLOCK as u64) as usize;
            if self
                .file
                .write_at(self.allocated, &self.zeros[..k])
                .is_err()
            {
                // Whatever part of the block landed is zeros too: harmless.
                self.allocated = u64::MAX;
                return;
            }
            self.allocated += k as u64;
        }
    }

    fn roll(&mut self) -> Result<()> {
        let path = tlog_segment::path(&self.dir, self.number);
        if self.allocated > self.len || self.file.is_direct() {
            // Drop the unused zeros (a direct file also pads its last block):
            // a full segment keeps only its frames.
            self.file
                .set_len(self.len)
                .map_err(|e| io_err("trimming segment", &path, e))?;
        }
        self.file
            .sync()
            .map_err(|e| io_err("syncing segment", &path, e))?;
        let number = self.number + 1;
        let (file, header) =
            TLogWriter::create_segment(self.vfs.as_ref(), &self.dir, number, self.next_lsn)?;
        self.file = file;
        self.number = number;
        self.len = header.len() as u64;
        self.allocated = self.len;
        self.header = header;
        if self.direct {
            self.go_direct();
        }
        Ok(())
    }

    /// The file frames are appended to now.
    pub fn file(&self) -> Arc<dyn VfsFile> {
        Arc::clone(&self.file)
    }

    /// The number of the segment being written.
    pub fn segment_number(&self) -> u64 {
        self.number
    }

    /// Frame bytes appended by this writer.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }
}

#[derive(Debug)]
struct SyncState {
    file: Option<Arc<dyn VfsFile>>,
    written: u64,
    synced: u64,
    syncing: bool,
    failed: Option<Error>,
    syncs: u64,
    /// Committers asleep on the condition variable (a lone leader wakes no one).
    waiters: usize,
    /// Whether the last sync saw other committers (followers waited on it, or
    /// it covered commits besides its leader's): the next leader may delay.
    concurrent: bool,
    /// A leader is delaying its sync for a committer about to append.
    delaying: bool,
    /// How long the last sync took.
    last_sync: Duration,
}

/// The longest a leader delays its sync for another committer's append (the
/// delay is a quarter of the last sync's duration, capped here).
const MAX_COMMIT_DELAY: Duration = Duration::from_micros(100);

/// Group commit: shares one `fsync` among concurrent committers. See the module docs.
#[derive(Debug)]
pub struct GroupSync {
    state: Mutex<SyncState>,
    cv: Condvar,
}

impl GroupSync {
    /// A group with everything up to `lsn` already durable.
    pub fn new(lsn: u64, file: Option<Arc<dyn VfsFile>>) -> GroupSync {
        GroupSync {
            state: Mutex::new(SyncState {
                file,
                written: lsn,
                synced: lsn,
                syncing: false,
                failed: None,
                syncs: 0,
                waiters: 0,
                concurrent: false,
                delaying: false,
                last_sync: Duration::ZERO,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that frames up to `lsn` were appended to `file` (or earlier, synced, segments).
    pub fn wrote(&self, lsn: u64, file: Arc<dyn VfsFile>) {
        let mut g = self.lock();
        g.written = g.written.max(lsn);
        g.file = Some(file);
        if g.delaying {
            self.cv.notify_all();
        }
    }

    /// Marks the group failed (an append failed): waiters and later commits get `e`.
    pub fn fail(&self, e: Error) {
        let mut g = self.lock();
        if g.failed.is_none() {
            g.failed = Some(e);
        }
        self.cv.notify_all();
    }

    /// The failure that stopped the group, if any.
    pub fn failure(&self) -> Option<Error> {
        self.lock().failed.clone()
    }

    /// Returns once every frame up to `lsn` is durable, leading a sync if none runs.
    pub fn wait_durable(&self, lsn: u64) -> Result<()> {
        let mut g = self.lock();
        loop {
            if g.synced >= lsn {
                return Ok(());
            }
            if let Some(e) = &g.failed {
                return Err(e.clone());
            }
            if g.syncing {
                g.waiters += 1;
                g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                g.waiters -= 1;
                continue;
            }
            let Some(file) = g.file.clone() else {
                return Ok(());
            };
            g.syncing = true;
            if g.concurrent {
                // Commit delay: other committers were active around the last
                // sync, and one is likely a few microseconds from appending
                // (with two committers, each would otherwise sync alone, one
                // flush per commit). Wait briefly for the log to grow, so one
                // flush carries both. A lone committer never waits.
                let start = g.written;
                let delay = (g.last_sync / 4).min(MAX_COMMIT_DELAY);
                let deadline = Instant::now() + delay;
                g.delaying = true;
                while g.written == start && g.failed.is_none() {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    g = match self.cv.wait_timeout(g, deadline - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
                g.delaying = false;
            }
            let target = g.written;
            drop(g);
            let t0 = Instant::now();
            let r = file.sync();
            let took = t0.elapsed();
            g = self.lock();
            g.syncing = false;
            g.last_sync = took;
            g.concurrent = g.waiters > 0 || target > lsn;
            match r {
                Ok(()) => {
                    g.synced = g.synced.max(target);
                    g.syncs += 1;
                }
                Err(e) => {
                    let e: Error = e.into();
                    if g.failed.is_none() {
                        g.failed = Some(Error::new(
                            e.code,
                            format!("log fsync failed: {}", e.message),
                        ));
                    }
                }
            }
            // The single-committer path makes no wake-up system call.
            if g.waiters > 0 {
                self.cv.notify_all();
            }
        }
    }

    /// Makes everything written so far durable.
    pub fn sync_all(&self) -> Result<()> {
        let w = self.lock().written;
        self.wait_durable(w)
    }

    /// The highest LSN known durable.
    pub fn synced_lsn(&self) -> u64 {
        self.lock().synced
    }

    /// The highest LSN appended.
    pub fn written_lsn(&self) -> u64 {
        self.lock().written
    }

    /// Successful `fsync`s run by the group so far (less than the commits, under load).
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_fs::FaultFs;
    use crate::tlog_reader::{self, LogEnd};
    use crate::{Delta, PageId};

    const FRAME_PAYLOAD: usize = 16 << 10;

    fn records(lsn: u64) -> Vec<Record> {
        let mut d = Delta::dense(PageId(1), 0, vec![lsn as u8 | 1; FRAME_PAYLOAD]);
        d.timestamp_ns = lsn;
        vec![Record::Delta(d)]
    }

    fn writer(fs: &FaultFs, limit: u64, direct: bool) -> TLogWriter {
        let dir = Path::new("/log");
        fs.create_dir_all(dir).unwrap();
        let mut w = TLogWriter::create(Arc::new(fs.clone()), dir, 1, 1, limit, false).unwrap();
        w.set_preallocate(true);
        w.set_direct_io(direct);
        assert_eq!(w.is_direct(), direct);
        w
    }

    /// The file's length once what was appended is written: a direct file pads its last block.
    fn written_len(w: &TLogWriter) -> u64 {
        if w.is_direct() {
            tlog_direct::align_up(w.len)
        } else {
            w.len
        }
    }

    /// Appends commits until `bytes` of frames were written; returns the last LSN.
    fn fill(w: &mut TLogWriter, bytes: u64) -> u64 {
        let mut lsn = w.next_lsn;
        while w.bytes_written() < bytes {
            w.append(lsn, 0, &records(lsn)).unwrap();
            lsn += 1;
        }
        lsn - 1
    }

    fn scan_lsns(fs: &FaultFs) -> (Vec<u64>, tlog_reader::LogScan) {
        let mut seen = Vec::new();
        let scan = tlog_reader::scan(fs, Path::new("/log"), |f, recs| {
            assert!(recs == records(f.lsn), "frame {} decoded wrong", f.lsn);
            seen.push(f.lsn);
            Ok(())
        })
        .unwrap();
        (seen, scan)
    }

    #[test]
    fn a_preallocated_zero_tail_is_a_clean_end_and_a_crash_keeps_what_was_synced() {
        for direct in [false, true] {
            let fs = FaultFs::new();
            let mut w = writer(&fs, 64 << 20, direct);
            let synced = fill(&mut w, PREALLOCATE_AFTER + (256 << 10));
            w.file().sync().unwrap();
            let seg = tlog_segment::path(Path::new("/log"), 1);
            let on_disk = fs.read(&seg).unwrap();
            assert!(
                on_disk.len() as u64 >= w.len + PREALLOCATE_CHUNK / 2,
                "no zeros were preallocated"
            );
            assert!(on_disk[w.len as usize..].iter().all(|&b| b == 0));
            let (seen, scan) = scan_lsns(&fs);
            assert_eq!(seen, (1..=synced).collect::<Vec<_>>());
            assert_eq!(scan.end, LogEnd::Clean);
            assert_eq!(scan.segments[0].good_len, w.len);

            // Unsynced frames written over the zeros vanish in a crash; the zeros come back.
            let target = w.bytes_written() + (64 << 10);
            let unsynced = fill(&mut w, target);
            assert!(unsynced > synced);
            fs.crash();
            let (seen, scan) = scan_lsns(&fs);
            assert_eq!(seen, (1..=synced).collect::<Vec<_>>());
            assert_eq!(scan.end, LogEnd::Clean);
        }
    }

    #[test]
    fn a_damaged_frame_before_the_zero_tail_is_a_torn_tail() {
        for direct in [false, true] {
            let fs = FaultFs::new();
            let mut w = writer(&fs, 64 << 20, direct);
            let last = fill(&mut w, PREALLOCATE_AFTER + (64 << 10));
            w.file().sync().unwrap();
            let seg = tlog_segment::path(Path::new("/log"), 1);
            let mut bytes = fs.read(&seg).unwrap();
            let last_len = tlog_frame::encode(last, 0, &records(last), false)
                .unwrap()
                .len();
            let last_start = w.len - last_len as u64;
            let at = w.len as usize - 100;
            bytes[at] ^= 0x40;
            fs.put(&seg, bytes.clone());
            let (seen, scan) = scan_lsns(&fs);
            assert_eq!(seen, (1..last).collect::<Vec<_>>());
            match scan.end {
                LogEnd::TornTail {
                    offset, bytes: b, ..
                } => {
                    assert_eq!(offset, last_start);
                    assert_eq!(offset + b, bytes.len() as u64);
                }
                e => panic!("expected a torn tail, got {e:?}"),
            }

            // Zeros where a frame should start, with something non-zero later, are damage too.
            bytes[at] ^= 0x40;
            let n = bytes.len();
            bytes[n - 1] = 7;
            fs.put(&seg, bytes);
            let (seen, scan) = scan_lsns(&fs);
            assert_eq!(seen, (1..=last).collect::<Vec<_>>());
            assert!(
                matches!(scan.end, LogEnd::TornTail { offset, .. } if offset == w.len),
                "{:?}",
                scan.end
            );
        }
    }

    #[test]
    fn a_rolled_segment_is_trimmed_to_its_frames() {
        for direct in [false, true] {
            let fs = FaultFs::new();
            let limit = PREALLOCATE_AFTER + (512 << 10);
            let mut w = writer(&fs, limit, direct);
            let last = fill(&mut w, limit + (256 << 10));
            assert_eq!(w.segment_number(), 2);
            w.file().sync().unwrap();
            let (seen, scan) = scan_lsns(&fs);
            assert_eq!(seen, (1..=last).collect::<Vec<_>>());
            assert_eq!(scan.end, LogEnd::Clean);
            let first = &scan.segments[0];
            assert_eq!(first.len, first.good_len, "the full segment kept zeros");
            assert!(first.len <= limit);
        }
    }

    #[test]
    fn large_frames_are_not_preallocated_for() {
        for direct in [false, true] {
            let fs = FaultFs::new();
            let mut w = writer(&fs, 64 << 20, direct);
            let mut lsn = 1;
            while w.bytes_written() < PREALLOCATE_AFTER + (1 << 20) {
                let mut d = Delta::dense(PageId(1), 0, vec![lsn as u8; 200 << 10]);
                d.timestamp_ns = 0;
                w.append(lsn, 0, &[Record::Delta(d)]).unwrap();
                lsn += 1;
            }
            w.file().sync().unwrap();
            let seg = tlog_segment::path(Path::new("/log"), 1);
            assert_eq!(fs.read(&seg).unwrap().len() as u64, written_len(&w));
        }
    }

    #[test]
    fn without_preallocation_the_file_holds_exactly_the_frames() {
        for direct in [false, true] {
            let fs = FaultFs::new();
            let mut w = writer(&fs, 64 << 20, direct);
            w.set_preallocate(false);
            fill(&mut w, PREALLOCATE_AFTER + (256 << 10));
            w.file().sync().unwrap();
            let seg = tlog_segment::path(Path::new("/log"), 1);
            assert_eq!(fs.read(&seg).unwrap().len() as u64, written_len(&w));
        }
    }

    #[test]
    fn small_commits_sharing_a_block_survive_its_rewrites_and_a_crash() {
        for synced in [1u64, 2, 3, 7, 20, 61] {
            let fs = FaultFs::new();
            let mut w = writer(&fs, 64 << 20, true);
            let small = |lsn: u64| {
                let mut d = Delta::dense(
                    PageId(1),
                    lsn,
                    vec![lsn as u8 | 1; 1 + (lsn as usize * 37) % 300],
                );
                d.timestamp_ns = lsn;
                vec![Record::Delta(d)]
            };
            for lsn in 1..=synced {
                w.append(lsn, 0, &small(lsn)).unwrap();
                w.file().sync().unwrap();
            }
            for lsn in synced + 1..synced + 4 {
                w.append(lsn, 0, &small(lsn)).unwrap();
            }
            fs.crash();
            let mut seen = Vec::new();
            let scan = tlog_reader::scan(&fs, Path::new("/log"), |f, recs| {
                assert!(recs == small(f.lsn), "frame {} decoded wrong", f.lsn);
                seen.push(f.lsn);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, (1..=synced).collect::<Vec<_>>());
            assert_eq!(scan.end, LogEnd::Clean);
        }
    }

    #[test]
    fn a_file_system_without_direct_io_keeps_the_buffered_path() {
        let fs = FaultFs::new();
        fs.set_direct_io(false);
        let dir = Path::new("/log");
        fs.create_dir_all(dir).unwrap();
        let mut w = TLogWriter::create(Arc::new(fs.clone()), dir, 1, 1, 64 << 20, false).unwrap();
        w.set_direct_io(true);
        assert!(!w.is_direct());
        let last = fill(&mut w, 256 << 10);
        w.file().sync().unwrap();
        fs.crash();
        let (seen, scan) = scan_lsns(&fs);
        assert_eq!(seen, (1..=last).collect::<Vec<_>>());
        assert_eq!(scan.end, LogEnd::Clean);
    }

    /// A file whose sync takes a while and records, as durable, what was
    /// appended when the sync started (the contract of `fdatasync`).
    #[derive(Debug, Default)]
    struct SlowSyncFile {
        appended: std::sync::atomic::AtomicU64,
        durable: std::sync::atomic::AtomicU64,
        syncs: std::sync::atomic::AtomicU64,
    }

    impl VfsFile for SlowSyncFile {
        fn append(&self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            let upto = self.appended.load(SeqCst);
            std::thread::sleep(Duration::from_micros(300));
            self.durable.fetch_max(upto, SeqCst);
            self.syncs.fetch_add(1, SeqCst);
            Ok(())
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn concurrent_committers_are_acknowledged_only_after_a_sync_that_covers_them() {
        use std::sync::atomic::Ordering::SeqCst;
        // Two and four committers exercise the commit delay (a leader waiting
        // for a follower's append); one committer never delays. Whatever the
        // interleaving, a commit returns only once a sync that started after
        // its append has finished.
        for threads in [1usize, 2, 4] {
            let file = Arc::new(SlowSyncFile::default());
            let dynfile: Arc<dyn VfsFile> = file.clone();
            let sync = Arc::new(GroupSync::new(0, Some(dynfile.clone())));
            let next = Arc::new(Mutex::new(0u64));
            let per = 150u64;
            std::thread::scope(|sc| {
                for _ in 0..threads {
                    let (sync, next, file, dynfile) =
                        (sync.clone(), next.clone(), file.clone(), dynfile.clone());
                    sc.spawn(move || {
                        for _ in 0..per {
                            let lsn = {
                                let mut n = next.lock().unwrap();
                                *n += 1;
                                file.appended.store(*n, SeqCst);
                                sync.wrote(*n, dynfile.clone());
                                *n
                            };
                            sync.wait_durable(lsn).unwrap();
                            assert!(
                                file.durable.load(SeqCst) >= lsn,
                                "commit {lsn} acknowledged before a sync covered it"
                            );
                        }
                    });
                }
            });
            let total = per * threads as u64;
            assert_eq!(sync.synced_lsn(), total);
            let syncs = file.syncs.load(SeqCst);
            assert_eq!(syncs, sync.sync_count());
            if threads == 1 {
                assert_eq!(syncs, total, "a lone committer syncs once per commit");
            } else {
                assert!(syncs <= total);
            }
        }
    }
}

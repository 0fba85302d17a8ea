//! Appending to the log, and group commit.
//!
//! [`TLogWriter`] owns the segment being written: it encodes each commit as
//! one frame, appends it, and rolls to a new segment when the current one
//! would pass its size limit (syncing the old one first, so every segment but
//! the last is always fully durable). Appends happen in LSN order under the
//! store's commit lock; they reach the operating system, not yet the disk.
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
//! A failed `fsync` is sticky: after it, the kernel may have dropped the dirty
//! pages, so no later sync can prove earlier writes durable. [`GroupSync`]
//! records the failure, every waiter gets the error, and the store refuses
//! further writes until it is reopened (recovery then finds out what made it).

use crate::error::{Error, ErrorCode, Result};
use crate::tlog_frame;
use crate::tlog_record::Record;
use crate::tlog_segment::{self, SegmentHeader};
use crate::vfs::{Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Adds the operation and path to an I/O error.
pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    let base: Error = e.into();
    Error::new(
        base.code,
        format!("{what} {}: {}", path.display(), base.message),
    )
}

/// Writes frames to the newest segment; see the module docs.
#[derive(Debug)]
pub struct TLogWriter {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    file: Arc<dyn VfsFile>,
    number: u64,
    len: u64,
    limit: u64,
    compress: bool,
    next_lsn: u64,
    bytes_written: u64,
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
        let path = tlog_segment::path(dir, number);
        let file = vfs
            .create(&path)
            .map_err(|e| io_err("creating segment", &path, e))?;
        let header = SegmentHeader { number, first_lsn }.encode();
        file.append(&header)
            .map_err(|e| io_err("writing segment header", &path, e))?;
        file.sync()
            .map_err(|e| io_err("syncing segment", &path, e))?;
        vfs.sync_dir(dir)
            .map_err(|e| io_err("syncing directory", dir, e))?;
        Ok(TLogWriter {
            vfs,
            dir: dir.to_path_buf(),
            file,
            number,
            len: header.len() as u64,
            limit,
            compress,
            next_lsn: first_lsn,
            bytes_written: 0,
        })
    }

    /// Appends the frame of commit `lsn` (which must be the next LSN). Returns its size.
    pub fn append(&mut self, lsn: u64, timestamp_ns: u64, records: &[Record]) -> Result<u64> {
        if lsn != self.next_lsn {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("log append of LSN {lsn}, expected {}", self.next_lsn),
            ));
        }
        let frame = tlog_frame::encode(lsn, timestamp_ns, records, self.compress)?;
        if self.len > tlog_segment::HEADER_LEN as u64 && self.len + frame.len() as u64 > self.limit
        {
            self.roll()?;
        }
        let path = tlog_segment::path(&self.dir, self.number);
        self.file
            .append(&frame)
            .map_err(|e| io_err("appending to", &path, e))?;
        self.len += frame.len() as u64;
        self.bytes_written += frame.len() as u64;
        self.next_lsn += 1;
        Ok(frame.len() as u64)
    }

    fn roll(&mut self) -> Result<()> {
        let path = tlog_segment::path(&self.dir, self.number);
        self.file
            .sync()
            .map_err(|e| io_err("syncing segment", &path, e))?;
        let next = TLogWriter::create(
            Arc::clone(&self.vfs),
            &self.dir,
            self.number + 1,
            self.next_lsn,
            self.limit,
            self.compress,
        )?;
        self.file = next.file;
        self.number = next.number;
        self.len = next.len;
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
}

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
                g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(file) = g.file.clone() else {
                return Ok(());
            };
            g.syncing = true;
            let target = g.written;
            drop(g);
            let r = file.sync();
            g = self.lock();
            g.syncing = false;
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
            self.cv.notify_all();
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

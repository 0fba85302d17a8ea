//! The durable store: a data directory, a write-ahead log, checkpoints.
//!
//! [`Store`] wraps the in-memory [`PageStore`] and makes every commit durable
//! and every retained past state reachable. A data directory holds:
//!
//! ```text
//! <dir>/log/00000000000000000001.tlog        log segments (tlog_segment)
//! <dir>/checkpoints/ckpt-<lsn>.mmsbckpt      checkpoints (checkpoint)
//! ```
//!
//! **Commit.** [`Store::commit`] takes a list of [`Op`]s. Under the commit lock
//! it validates all of them against the current state (a bad one rejects the
//! whole commit, which leaves no trace), gives the commit the next LSN, appends
//! it to the log as one frame (write-ahead: logged before any page changes),
//! then applies it. Under [`Durability::Immediate`] the call then waits, outside
//! the lock, until the frame is synced; concurrent commits share one `fsync`
//! (group commit, see [`tlog_writer`](crate::tlog_writer)). Under
//! [`Durability::Buffered`] a background thread syncs at least every
//! `max_delay`, and a crash may lose the commits of that last interval (never
//! part of one). [`Durability::None`] keeps no files at all.
//!
//! **Open.** [`Store::open`] runs [`recovery`](crate::recovery): newest
//! verifying checkpoint, plus the log after it. A torn tail is cut (and
//! reported in [`Store::recovery_report`]); corruption inside the log is an
//! error unless [`StoreOptions::recovery`] accepts the loss. Writing then
//! continues in a fresh segment.
//!
//! **Failures.** An I/O error while appending or syncing (`Io`, `NoSpace`)
//! fails that commit, which is not acknowledged, and *stops the store for
//! writes*: every later commit fails with [`ErrorCode::ReadOnly`] naming the
//! original error, until the store is reopened. Reads go on. The store does not
//! try to carry on after a failed write or `fsync`, because it can no longer
//! know what of the log reached the disk; reopening lets recovery find out.
//! Whether the failed commit itself survives is decided by what reached the
//! disk: it may or may not be present after reopening, entirely or not at all.
//!
//! **Checkpoints and retention.** [`Store::checkpoint`] snapshots the state at
//! a commit boundary, keeps the newest [`StoreOptions::checkpoints_kept`], and
//! deletes the log segments wholly covered by the oldest kept one.

use crate::checkpoint::{self, CheckpointInfo};
use crate::commit::{self, Op};
use crate::delta::now_ns;
use crate::error::{Error, ErrorCode, Result};
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::recovery::{self, RecoveryOptions, RecoveryReport, Target, CHECKPOINT_DIR, LOG_DIR};
use crate::replay::{self, HistoryEntry, ReadOnlyState};
use crate::tlog_reader::LogEnd;
use crate::tlog_segment;
use crate::tlog_writer::{io_err, GroupSync, TLogWriter};
use crate::vfs::{DirLock, RealVfs, Vfs};

/// The file in a data directory whose lock marks the store as open.
pub const LOCK_FILE: &str = "LOCK";
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// When a commit is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `commit` returns after the commit's log frame is synced (group commit).
    Immediate,
    /// `commit` returns after the append; a background thread syncs within `max_delay`.
    Buffered {
        /// The longest a commit stays unsynced (about).
        max_delay: Duration,
    },
    /// No log, no files: an in-memory store.
    None,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreOptions {
    /// When commits are durable.
    pub durability: Durability,
    /// A log segment is rolled when it would grow past this many bytes.
    pub segment_bytes: u64,
    /// Compress log frames (run-length coding of masks and payloads).
    pub compression: bool,
    /// Checkpoints kept (at least 1).
    pub checkpoints_kept: usize,
    /// What recovery may accept.
    pub recovery: RecoveryOptions,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            durability: Durability::Immediate,
            segment_bytes: 64 << 20,
            compression: false,
            checkpoints_kept: 2,
            recovery: RecoveryOptions::default(),
        }
    }
}

/// What a successful commit reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The commit's LSN.
    pub lsn: u64,
    /// The commit's timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Ids of the pages the commit created, in op order.
    pub created: Vec<PageId>,
}

/// Counters of a durable store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// LSN of the last commit applied.
    pub lsn: u64,
    /// Highest LSN known to be on disk.
    pub durable_lsn: u64,
    /// Commits since open.
    pub commits: u64,
    /// Log bytes appended since open.
    pub log_bytes: u64,
    /// Log `fsync`s since open (fewer than commits under concurrent load).
    pub log_syncs: u64,
}

#[derive(Debug)]
struct Inner {
    state: PageStore,
    lsn: u64,
    timestamp_ns: u64,
    writer: Option<TLogWriter>,
    /// Segments of the log, (number, first LSN), ascending.
    segments: Vec<(u64, u64)>,
    failed: Option<Error>,
    closed: bool,
    commits: u64,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    sync: GroupSync,
    vfs: Arc<dyn Vfs>,
    dir: Option<PathBuf>,
    opts: StoreOptions,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    checkpointing: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A durable store. See the module docs.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    report: RecoveryReport,
    background: Option<JoinHandle<()>>,
    /// The data directory's `LOCK` file, held while the store is open.
    lock: Option<DirLock>,
}

impl Store {
    /// An in-memory store (durability `None`).
    pub fn in_memory() -> Store {
        Store::from_parts(
            Arc::new(RealVfs),
            None,
            StoreOptions {
                durability: Durability::None,
                ..StoreOptions::default()
            },
            PageStore::new(),
            0,
            0,
            None,
            Vec::new(),
            RecoveryReport::default(),
        )
    }

    /// Opens (creating if needed) the data directory `dir` and recovers its state.
    /// With [`Durability::None`] no file is touched and the store starts empty.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        Store::open_with_vfs(Arc::new(RealVfs), dir.as_ref(), opts)
    }

    /// [`Store::open`] over a given file system (tests use [`FaultFs`](crate::fault_fs)).
    pub fn open_with_vfs(vfs: Arc<dyn Vfs>, dir: &Path, opts: StoreOptions) -> Result<Store> {
        if opts.durability == Durability::None {
            let mut s = Store::in_memory();
            if let Some(sh) = Arc::get_mut(&mut s.shared) {
                sh.opts = opts;
            }
            return Ok(s);
        }
        let log_dir = dir.join(LOG_DIR);
        let ckpt_dir = dir.join(CHECKPOINT_DIR);
        for d in [dir, &log_dir, &ckpt_dir] {
            vfs.create_dir_all(d)
                .map_err(|e| io_err("creating", d, e))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = vfs.lock_exclusive(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::new(
                    ErrorCode::Io,
                    format!(
                        "data directory {} is in use: another open store holds {}",
                        dir.display(),
                        lock_path.display()
                    ),
                )
            } else {
                io_err("locking", &lock_path, e)
            }
        })?;
        vfs.sync_dir(dir).map_err(|e| io_err("syncing", dir, e))?;
        checkpoint::remove_temporaries(vfs.as_ref(), &ckpt_dir)?;
        let rec = recovery::recover(vfs.as_ref(), dir, Target::Latest, opts.recovery)?;
        let lsn = rec.report.lsn;
        // Repair: cut a torn tail or accepted corruption, drop what follows it.
        let cut = match &rec.scan.end {
            LogEnd::Clean => None,
            LogEnd::TornTail { file, offset, .. } | LogEnd::Corrupt { file, offset, .. } => {
                Some((file.clone(), *offset))
            }
        };
        let mut segments: Vec<(u64, u64)> = Vec::new();
        let mut dropping = false;
        for s in &rec.scan.segments {
            if dropping {
                vfs.remove(&s.path)
                    .map_err(|e| io_err("removing", &s.path, e))?;
                continue;
            }
            if let Some((file, offset)) = &cut {
                if *file == s.path {
                    dropping = true;
                    if *offset < tlog_segment::HEADER_LEN as u64 {
                        vfs.remove(&s.path)
                            .map_err(|e| io_err("removing", &s.path, e))?;
                        continue;
                    }
                    let f = vfs
                        .open_append(&s.path)
                        .map_err(|e| io_err("opening", &s.path, e))?;
                    f.set_len(*offset)
                        .map_err(|e| io_err("truncating", &s.path, e))?;
                    f.sync().map_err(|e| io_err("syncing", &s.path, e))?;
                }
            }
            segments.push((s.number, s.first_lsn));
        }
        // A checkpoint newer than the whole log makes the log's segments useless
        // (and would leave a gap before the next segment): drop them.
        if lsn > rec.scan.summary.last_lsn && !segments.is_empty() {
            for (n, _) in segments.drain(..) {
                let p = tlog_segment::path(&log_dir, n);
                vfs.remove(&p).map_err(|e| io_err("removing", &p, e))?;
            }
        }
        vfs.sync_dir(&log_dir)
            .map_err(|e| io_err("syncing", &log_dir, e))?;
        let number = rec
            .scan
            .segments
            .iter()
            .map(|s| s.number)
            .max()
            .unwrap_or(0)
            + 1;
        let mut writer = TLogWriter::create(
            Arc::clone(&vfs),
            &log_dir,
            number,
            lsn + 1,
            opts.segment_bytes,
            opts.compression,
        )?;
        // Preallocation makes each commit's sync cheaper; only immediate durability syncs per commit.
        writer.set_preallocate(opts.durability == Durability::Immediate);
        segments.push((number, lsn + 1));
        let ts = rec.report.timestamp_ns;
        let mut store = Store::from_parts(
            vfs,
            Some(dir.to_path_buf()),
            opts,
            rec.state,
            lsn,
            ts,
            Some(writer),
            segments,
            rec.report,
        );
        store.lock = Some(lock);
        store.prune_log()?;
        Ok(store)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: Option<PathBuf>,
        opts: StoreOptions,
        state: PageStore,
        lsn: u64,
        timestamp_ns: u64,
        writer: Option<TLogWriter>,
        segments: Vec<(u64, u64)>,
        report: RecoveryReport,
    ) -> Store {
        let file = writer.as_ref().map(TLogWriter::file);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state,
                lsn,
                timestamp_ns,
                writer,
                segments,
                failed: None,
                closed: false,
                commits: 0,
            }),
            sync: GroupSync::new(lsn, file),
            vfs,
            dir,
            opts,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            checkpointing: Mutex::new(()),
        });
        let background = match opts.durability {
            Durability::Buffered { max_delay } => {
                let sh = Arc::clone(&shared);
                Some(std::thread::spawn(move || background_sync(&sh, max_delay)))
            }
            _ => None,
        };
        Store {
            shared,
            report,
            background,
            lock: None,
        }
    }

    /// Validates, logs and applies one commit. See the module docs.
    pub fn commit(&self, ops: Vec<Op>) -> Result<CommitReceipt> {
        let sh = &self.shared;
        let lsn;
        let receipt = {
            let mut g = sh.lock();
            if g.closed {
                return Err(Error::new(ErrorCode::ReadOnly, "the store is closed"));
            }
            if let Some(e) = g.failed.clone().or_else(|| sh.sync.failure()) {
                return Err(refused(&e));
            }
            let (records, created) = commit::prepare(&g.state, ops)?;
            lsn = g.lsn + 1;
            let ts = now_ns().max(g.timestamp_ns);
            let inner = &mut *g;
            if let Some(w) = inner.writer.as_mut() {
                let before = w.segment_number();
                match w.append(lsn, ts, &records) {
                    Ok(_) => {}
                    Err(e) if e.code == ErrorCode::InvalidArgument => return Err(e),
                    Err(e) => {
                        inner.failed = Some(e.clone());
                        sh.sync.fail(e.clone());
                        return Err(e);
                    }
                }
                if w.segment_number() != before {
                    inner.segments.push((w.segment_number(), lsn));
                }
                sh.sync.wrote(lsn, w.file());
            }
            if let Err(e) = commit::apply_records(&mut inner.state, &records) {
                let e = Error::new(
                    ErrorCode::Internal,
                    format!("a validated commit failed to apply: {e}"),
                );
                inner.failed = Some(e.clone());
                return Err(e);
            }
            inner.lsn = lsn;
            inner.timestamp_ns = ts;
            inner.commits += 1;
            CommitReceipt {
                lsn,
                timestamp_ns: ts,
                created,
            }
        };
        if sh.opts.durability == Durability::Immediate {
            sh.sync.wait_durable(lsn)?;
        }
        Ok(receipt)
    }

    /// Runs `f` on the current state (under the commit lock: keep it short).
    pub fn read_with<R>(&self, f: impl FnOnce(&PageStore) -> R) -> R {
        f(&self.shared.lock().state)
    }

    /// A copy of a page's bytes.
    pub fn read(&self, id: PageId) -> Result<Vec<u8>> {
        self.read_with(|s| s.read(id))
    }

    /// A copy of a page (bytes shared copy-on-write, epoch, metadata, view).
    pub fn page(&self, id: PageId) -> Result<Page> {
        self.read_with(|s| s.page(id).cloned())
    }

    /// The LSN of the last commit.
    pub fn lsn(&self) -> u64 {
        self.shared.lock().lsn
    }

    /// The data directory, unless in-memory.
    pub fn dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// What recovery found when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The store's counters.
    pub fn stats(&self) -> DurableStats {
        let g = self.shared.lock();
        DurableStats {
            lsn: g.lsn,
            durable_lsn: if self.shared.dir.is_some() {
                self.shared.sync.synced_lsn()
            } else {
                0
            },
            commits: g.commits,
            log_bytes: g.writer.as_ref().map_or(0, TLogWriter::bytes_written),
            log_syncs: self.shared.sync.sync_count(),
        }
    }

    /// Makes every commit so far durable (whatever the durability mode).
    pub fn sync(&self) -> Result<()> {
        if self.shared.dir.is_none() {
            return Ok(());
        }
        self.shared.sync.sync_all()
    }

    /// Writes a checkpoint of the current state, prunes old checkpoints and the
    /// log segments they make unnecessary. Commits go on while it is written.
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        let sh = &self.shared;
        let dir = sh.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store has no checkpoints",
            )
        })?;
        let _one = sh.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let (pages, lsn, ts, next) = {
            let g = sh.lock();
            let pages: Vec<Page> = g
                .state
                .page_ids()
                .into_iter()
                .filter_map(|id| g.state.page(id).ok().cloned())
                .collect();
            (pages, g.lsn, g.timestamp_ns, g.state.next_page_id())
        };
        // The log must hold everything the checkpoint claims before it may replace the log.
        sh.sync.wait_durable(lsn)?;
        let ckpt_dir = dir.join(CHECKPOINT_DIR);
        let info = checkpoint::write(sh.vfs.as_ref(), &ckpt_dir, lsn, ts, next, &pages)?;
        checkpoint::prune(sh.vfs.as_ref(), &ckpt_dir, sh.opts.checkpoints_kept)?;
        self.prune_log()?;
        Ok(info)
    }

    /// Deletes log segments every frame of which is covered by the oldest kept checkpoint.
    fn prune_log(&self) -> Result<()> {
        let sh = &self.shared;
        let Some(dir) = &sh.dir else { return Ok(()) };
        let ckpts = checkpoint::list(sh.vfs.as_ref(), &dir.join(CHECKPOINT_DIR))?;
        let Some(&(oldest, _)) = ckpts.first() else {
            return Ok(());
        };
        let log_dir = dir.join(LOG_DIR);
        let mut g = sh.lock();
        let mut removed = false;
        while g.segments.len() >= 2 && g.segments[1].1 <= oldest + 1 {
            let (n, _) = g.segments.remove(0);
            let p = tlog_segment::path(&log_dir, n);
            sh.vfs.remove(&p).map_err(|e| io_err("removing", &p, e))?;
            removed = true;
        }
        drop(g);
        if removed {
            sh.vfs
                .sync_dir(&log_dir)
                .map_err(|e| io_err("syncing", &log_dir, e))?;
        }
        Ok(())
    }

    /// The state after commit `lsn` (or at a time), rebuilt from disk, read-only.
    pub fn state_at(&self, target: Target) -> Result<ReadOnlyState> {
        let dir = self.shared.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store keeps no history",
            )
        })?;
        self.sync()?;
        replay::state_at(self.shared.vfs.as_ref(), dir, target)
    }

    /// The deltas `page` received in commits `from_lsn..=to_lsn`.
    pub fn page_history(
        &self,
        page: PageId,
        from_lsn: u64,
        to_lsn: u64,
    ) -> Result<Vec<HistoryEntry>> {
        let dir = self.shared.dir.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unsupported,
                "an in-memory store keeps no history",
            )
        })?;
        self.sync()?;
        replay::page_history(self.shared.vfs.as_ref(), dir, page, from_lsn, to_lsn)
    }

    /// Syncs everything and closes the store. Later commits fail with `ReadOnly`.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        {
            let mut s = self.shared.stop.lock().unwrap_or_else(|p| p.into_inner());
            *s = true;
            self.shared.stop_cv.notify_all();
        }
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
        let r = self.sync();
        self.shared.lock().closed = true;
        self.lock = None;
        r
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.shared.lock().closed {
            let _ = self.shutdown();
        }
    }
}

fn refused(e: &Error) -> Error {
    Error::new(
        ErrorCode::ReadOnly,
        format!("the store refuses writes after an I/O failure ({e}); reopen it to recover"),
    )
}

fn background_sync(sh: &Shared, max_delay: Duration) {
    let mut stop = sh.stop.lock().unwrap_or_else(|p| p.into_inner());
    while !*stop {
        let (g, _) = sh
            .stop_cv
            .wait_timeout(stop, max_delay)
            .unwrap_or_else(|p| p.into_inner());
        stop = g;
        if *stop {
            break;
        }
        drop(stop);
        let _ = sh.sync.sync_all();
        stop = sh.stop.lock().unwrap_or_else(|p| p.into_inner());
    }
}

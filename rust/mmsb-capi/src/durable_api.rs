//! Durable stores: open on a data directory, atomic commits, checkpoints,
//! replay to a past LSN or time (read-only states), page history, log summary
//! and recovery report.
//!
//! A durable store handle is a store handle of its own kind: every page
//! function (`mmsb_page_read`, `mmsb_page_info`, `mmsb_page_borrow`,
//! `mmsb_page_list`, `mmsb_page_get_metadata`, `mmsb_store_stats`) reads it, and
//! every page write (`mmsb_page_create`, `mmsb_store_apply_delta`, ...) on it is
//! a one-operation commit. Several operations commit atomically through a
//! commit builder (`mmsb_commit_begin` ... `mmsb_commit_execute`). A read-only
//! state (`mmsb_replay_to_lsn` / `mmsb_replay_to_time`) is read by the same page
//! functions; every write to it is `MMSB_ERR_READ_ONLY`.

use crate::delta_api::MmsbDelta;
use crate::ffi_util::{c_str, call, copy_ids, need_out, out, slice};
use crate::handle::{self, lock, Object, TAG_COMMIT, TAG_HISTORY, TAG_STATE};
use crate::page_api::{view_from_c, MmsbPageId};
use crate::store_api::MmsbStore;
use mmsb_core::{
    tlog_reader, CommitReceipt, Durability, Error, ErrorCode, HistoryEntry, Op, PageId,
    PageLocation, RecoveryOptions, Result, Store, StoreOptions, Target,
};
use std::ffi::c_char;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A commit-builder handle (0 is null).
pub type MmsbCommit = u64;
/// A read-only past state handle (0 is null).
pub type MmsbState = u64;
/// A page-history handle (0 is null).
pub type MmsbHistory = u64;

/// Durability: `commit` returns after the log is synced (group commit).
pub const MMSB_DURABILITY_IMMEDIATE: u8 = 0;
/// Durability: `commit` returns after the append; synced in the background within `buffered_max_delay_ms`.
pub const MMSB_DURABILITY_BUFFERED: u8 = 1;
/// Durability: no files at all (an in-memory store behind the durable API).
pub const MMSB_DURABILITY_NONE: u8 = 2;

/// How `mmsb_store_open` opens a durable store. Fill it with
/// `mmsb_store_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbStoreOptions {
    /// `MMSB_DURABILITY_*`.
    pub durability: u8,
    /// Under buffered durability, the longest a commit stays unsynced (ms, at least 1).
    pub buffered_max_delay_ms: u64,
    /// A log segment is rolled when it would grow past this many bytes (at least 1).
    pub segment_bytes: u64,
    /// Compress log frames.
    pub compression: bool,
    /// Checkpoints kept (at least 1); older checkpoints and the log they cover are deleted.
    pub checkpoints_kept: u64,
    /// Accept corruption inside the log at open: keep what precedes it, drop
    /// the rest (reported by `mmsb_recovery_report`). Off: such corruption
    /// fails the open with `MMSB_ERR_CORRUPTION` / `MMSB_ERR_CHECKSUM_MISMATCH`.
    pub recover_past_corruption: bool,
}

/// What `mmsb_checkpoint` wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbCheckpointInfo {
    /// The LSN the checkpoint captures.
    pub lsn: u64,
    /// That commit's timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Pages in it.
    pub pages: u64,
    /// Size of the checkpoint file in bytes.
    pub file_bytes: u64,
}

/// What `mmsb_log_summary` reports about the log on disk now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbLogSummary {
    /// Segment files.
    pub segments: u64,
    /// Commits (good frames) in the log.
    pub commits: u64,
    /// Records (operations) in those commits.
    pub records: u64,
    /// First LSN in the log (0 if empty).
    pub first_lsn: u64,
    /// Last LSN in the log (0 if empty).
    pub last_lsn: u64,
    /// Bytes of frames as stored.
    pub stored_bytes: u64,
    /// Bytes of frames after decompression.
    pub raw_bytes: u64,
    /// Frames stored compressed.
    pub compressed_frames: u64,
    /// `raw_bytes / stored_bytes` (1.0 for an empty or uncompressed log).
    pub compression_ratio: f64,
}

/// What recovery found when the store was opened (`mmsb_recovery_report`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbRecoveryReport {
    /// The LSN of the recovered state.
    pub lsn: u64,
    /// That commit's timestamp (0 for the empty state).
    pub timestamp_ns: u64,
    /// Commits replayed from the log.
    pub commits_replayed: u64,
    /// Log bytes replayed.
    pub bytes_replayed: u64,
    /// Bytes of a torn tail cut from the end of the log (0 if none).
    pub torn_tail_bytes: u64,
    /// Bytes dropped after accepted corruption (0 if none).
    pub corruption_bytes_dropped: u64,
    /// Whether recovery started from a checkpoint.
    pub has_checkpoint: bool,
    /// That checkpoint's LSN (0 if none).
    pub checkpoint_lsn: u64,
    /// Checkpoints that failed to verify and were skipped.
    pub checkpoints_rejected: u64,
    /// Wall time recovery took, ns.
    pub elapsed_ns: u64,
}

/// Counters of a durable store (`mmsb_store_durable_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbDurableStats {
    /// LSN of the last commit applied.
    pub lsn: u64,
    /// Highest LSN known to be on disk.
    pub durable_lsn: u64,
    /// Commits since open.
    pub commits: u64,
    /// Log bytes appended since open.
    pub log_bytes: u64,
    /// Log fsyncs since open.
    pub log_syncs: u64,
}

/// A commit being built: the store it belongs to (by handle, so closing the
/// store is never held up by a builder) and its operations.
pub(crate) struct CommitBuilder {
    store: u64,
    ops: Vec<Op>,
    created: Vec<PageId>,
    lsn: u64,
}

/// A page's history, as listed by `mmsb_page_history`.
pub(crate) struct History {
    entries: Vec<HistoryEntry>,
}

/// Commits one operation.
pub(crate) fn commit_one(s: &Store, op: Op) -> Result<CommitReceipt> {
    s.commit(vec![op])
}

fn store_options(o: &MmsbStoreOptions) -> Result<StoreOptions> {
    let durability = match o.durability {
        MMSB_DURABILITY_IMMEDIATE => Durability::Immediate,
        MMSB_DURABILITY_BUFFERED => {
            if o.buffered_max_delay_ms == 0 {
                return Err(Error::invalid(
                    "buffered_max_delay_ms must be at least 1 under buffered durability",
                ));
            }
            Durability::Buffered {
                max_delay: Duration::from_millis(o.buffered_max_delay_ms),
            }
        }
        MMSB_DURABILITY_NONE => Durability::None,
        d => {
            return Err(Error::invalid(format!(
                "unknown durability mode {d} (MMSB_DURABILITY_IMMEDIATE, _BUFFERED or _NONE)"
            )))
        }
    };
    if o.segment_bytes == 0 {
        return Err(Error::invalid("segment_bytes must be at least 1"));
    }
    if o.checkpoints_kept == 0 {
        return Err(Error::invalid("checkpoints_kept must be at least 1"));
    }
    let checkpoints_kept = usize::try_from(o.checkpoints_kept)
        .map_err(|_| Error::invalid("checkpoints_kept is too large"))?;
    Ok(StoreOptions {
        durability,
        segment_bytes: o.segment_bytes,
        compression: o.compression,
        checkpoints_kept,
        recovery: RecoveryOptions {
            recover_past_corruption: o.recover_past_corruption,
        },
    })
}

/// Writes the default options into `*out_options`: immediate durability,
/// 10 ms buffered delay (used only under buffered), 64 MiB segments, no
/// compression, 2 checkpoints kept, corruption inside the log is an error.
///
/// # Safety
/// `out_options` is null or valid for writing one `MmsbStoreOptions`.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_options_default(out_options: *mut MmsbStoreOptions) -> i32 {
    call(|| {
        let d = StoreOptions::default();
        let v = MmsbStoreOptions {
            durability: MMSB_DURABILITY_IMMEDIATE,
            buffered_max_delay_ms: 10,
            segment_bytes: d.segment_bytes,
            compression: d.compression,
            checkpoints_kept: d.checkpoints_kept as u64,
            recover_past_corruption: d.recovery.recover_past_corruption,
        };
        // SAFETY: caller contract above.
        unsafe { out(out_options, v, "out_options") }
    })
}

/// Opens (creating if needed) the durable store in directory `dir`
/// (NUL-terminated UTF-8) with `*options`, recovers its state (newest
/// verifying checkpoint plus the log after it) and writes its handle into
/// `*out_store`. Close it with `mmsb_store_close`. A directory that cannot be
/// created or read is `MMSB_ERR_IO` (or `MMSB_ERR_NO_SPACE`); damage inside
/// the log is `MMSB_ERR_CORRUPTION` / `MMSB_ERR_CHECKSUM_MISMATCH` unless
/// `recover_past_corruption` is set. With `MMSB_DURABILITY_NONE` no file is
/// touched and the store starts empty.
///
/// # Safety
/// `dir` is null or NUL-terminated; `options` is null or valid for reading one
/// `MmsbStoreOptions`; `out_store` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_open(
    dir: *const c_char,
    options: *const MmsbStoreOptions,
    out_store: *mut MmsbStore,
) -> i32 {
    call(|| {
        need_out(out_store, "out_store")?;
        // SAFETY: caller contract above.
        let d = unsafe { c_str(dir, "dir")? };
        if d.is_empty() {
            return Err(Error::invalid("dir is an empty path"));
        }
        // SAFETY: caller contract above (one element, alignment checked).
        let o = unsafe { slice(options, 1, "options")? };
        let opts = store_options(&o[0])?;
        let s = Store::open(d, opts)?;
        let h = handle::insert(Object::Durable(Arc::new(s)));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_store, h, "out_store") }
    })
}

/// Writes the LSN of the last commit of a durable store, or the LSN a
/// read-only state was replayed to, into `*out_lsn` (an in-memory store is an
/// `MMSB_ERR_INVALID_HANDLE`: it has no log).
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_lsn(store: MmsbStore, out_lsn: *mut u64) -> i32 {
    call(|| {
        need_out(out_lsn, "out_lsn")?;
        let lsn = match handle::get_any(
            store,
            &[handle::TAG_DURABLE, TAG_STATE],
            "durable store or read-only state",
        )? {
            Object::Durable(s) => s.lsn(),
            Object::State(s) => s.lsn(),
            _ => return Err(Error::new(ErrorCode::Internal, "wrong object kind")),
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_lsn, lsn, "out_lsn") }
    })
}

/// Writes a durable store's counters into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_durable_stats(
    store: MmsbStore,
    out_stats: *mut MmsbDurableStats,
) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let st = handle::durable(store)?.stats();
        let v = MmsbDurableStats {
            lsn: st.lsn,
            durable_lsn: st.durable_lsn,
            commits: st.commits,
            log_bytes: st.log_bytes,
            log_syncs: st.log_syncs,
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stats, v, "out_stats") }
    })
}

/// Makes every commit so far durable, whatever the durability mode.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_store_sync(store: MmsbStore) -> i32 {
    call(|| handle::durable(store)?.sync())
}

// ---------------------------------------------------------------- commits

fn builder(commit: MmsbCommit) -> Result<Arc<Mutex<CommitBuilder>>> {
    match handle::get(commit, TAG_COMMIT)? {
        Object::Commit(c) => Ok(c),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "commit tag on a non-commit",
        )),
    }
}

/// Adds one operation to a commit being built.
pub(crate) fn push(commit: MmsbCommit, op: Op) -> Result<()> {
    let c = builder(commit)?;
    lock(&c)?.ops.push(op);
    Ok(())
}

/// Starts a commit on the durable store `store`: writes a new, empty commit
/// builder handle into `*out_commit`. Add operations with `mmsb_commit_*`,
/// commit them with `mmsb_commit_execute`, free the builder with
/// `mmsb_commit_free`. Operations are only validated when executed.
///
/// # Safety
/// `out_commit` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_begin(store: MmsbStore, out_commit: *mut MmsbCommit) -> i32 {
    call(|| {
        need_out(out_commit, "out_commit")?;
        handle::durable(store)?;
        let h = handle::insert(Object::Commit(Arc::new(Mutex::new(CommitBuilder {
            store,
            ops: Vec::new(),
            created: Vec::new(),
            lsn: 0,
        }))));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_commit, h, "out_commit") }
    })
}

/// Adds "apply this delta" to the commit. The delta is copied: the handle
/// stays the caller's, and later changes to it do not affect the commit.
///
/// # Safety
/// None beyond passing handle values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_add_delta(commit: MmsbCommit, delta: MmsbDelta) -> i32 {
    call(|| {
        let d = handle::delta(delta)?;
        let d = lock(&d)?.clone();
        d.validate_shape()?;
        push(commit, Op::Delta(d))
    })
}

/// Adds "create a zeroed page of `size` bytes at `location`" to the commit.
/// Its id is assigned at execution (`mmsb_commit_created_pages`).
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_create_page(
    commit: MmsbCommit,
    size: u64,
    location: u8,
) -> i32 {
    call(|| {
        let location = PageLocation::from_u8(location)?;
        push(commit, Op::CreatePage { size, location })
    })
}

/// Adds "delete page `page`" to the commit.
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_delete_page(commit: MmsbCommit, page: MmsbPageId) -> i32 {
    call(|| push(commit, Op::DeletePage(PageId(page))))
}

/// Adds "set metadata `key` -> `value`" to the commit (copied).
///
/// # Safety
/// `key` is null or NUL-terminated; `value` is null (only with `value_len` 0)
/// or valid for reading `value_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_set_metadata(
    commit: MmsbCommit,
    page: MmsbPageId,
    key: *const c_char,
    value: *const u8,
    value_len: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let (k, v) = unsafe { (c_str(key, "key")?, slice(value, value_len, "value")?) };
        push(
            commit,
            Op::SetMetadata {
                page: PageId(page),
                key: k.to_owned(),
                value: v.to_vec(),
            },
        )
    })
}

/// Adds "remove metadata `key`" to the commit (a no-op if the key is absent).
///
/// # Safety
/// `key` is null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_remove_metadata(
    commit: MmsbCommit,
    page: MmsbPageId,
    key: *const c_char,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let k = unsafe { c_str(key, "key")? };
        push(
            commit,
            Op::RemoveMetadata {
                page: PageId(page),
                key: k.to_owned(),
            },
        )
    })
}

/// Adds "set the numeric view to `len` elements of `dtype`" to the commit
/// (`MMSB_DTYPE_NONE` clears it).
///
/// # Safety
/// None beyond passing values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_set_view(
    commit: MmsbCommit,
    page: MmsbPageId,
    dtype: u8,
    len: u64,
) -> i32 {
    call(|| {
        let view = view_from_c(dtype, len)?;
        push(
            commit,
            Op::SetView {
                page: PageId(page),
                view,
            },
        )
    })
}

/// Writes the number of operations waiting in the commit into `*out_count`.
///
/// # Safety
/// `out_count` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_op_count(commit: MmsbCommit, out_count: *mut u64) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let n = lock(&*builder(commit)?)?.ops.len() as u64;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_count, n, "out_count") }
    })
}

/// Validates and commits the builder's operations as one atomic commit: all
/// of them are logged and applied, or (on any error) none, and nothing
/// changes. On success writes the commit's LSN into `*out_lsn`, empties the
/// builder (it may be reused for another commit) and records the ids of the
/// pages it created (`mmsb_commit_created_pages`). On failure the operations
/// stay in the builder. An empty commit is `MMSB_ERR_INVALID_ARGUMENT`; a
/// closed store is `MMSB_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_execute(commit: MmsbCommit, out_lsn: *mut u64) -> i32 {
    call(|| {
        need_out(out_lsn, "out_lsn")?;
        let c = builder(commit)?;
        let mut g = lock(&c)?;
        let s = handle::durable(g.store)?;
        let receipt = s.commit(g.ops.clone())?;
        g.ops.clear();
        g.created = receipt.created;
        g.lsn = receipt.lsn;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_lsn, receipt.lsn, "out_lsn") }
    })
}

/// Copies the ids of the pages created by the builder's last successful
/// execution (in operation order) into `buf` (capacity `cap` ids) and their
/// number into `*out_count`; the buffer-size rules of `mmsb_page_list` apply.
///
/// # Safety
/// `buf` is null or valid for `cap` u64 writes; `out_count` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_created_pages(
    commit: MmsbCommit,
    buf: *mut MmsbPageId,
    cap: u64,
    out_count: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let ids = lock(&*builder(commit)?)?.created.clone();
        // SAFETY: caller contract above.
        unsafe { copy_ids(&ids, buf, cap, out_count) }
    })
}

/// Frees a commit builder (its pending operations are dropped, never committed).
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_commit_free(commit: MmsbCommit) -> i32 {
    call(|| handle::remove(commit, TAG_COMMIT).map(|_| ()))
}

// ---------------------------------------------------------------- checkpoints, replay

/// Writes a checkpoint of the current state (consistent, at a commit
/// boundary), prunes old checkpoints and the log segments they make
/// unnecessary, and describes it in `*out_info`. A store with
/// `MMSB_DURABILITY_NONE` is `MMSB_ERR_UNSUPPORTED`.
///
/// # Safety
/// `out_info` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_checkpoint(
    store: MmsbStore,
    out_info: *mut MmsbCheckpointInfo,
) -> i32 {
    call(|| {
        need_out(out_info, "out_info")?;
        let i = handle::durable(store)?.checkpoint()?;
        let v = MmsbCheckpointInfo {
            lsn: i.lsn,
            timestamp_ns: i.timestamp_ns,
            pages: i.pages,
            file_bytes: i.file_bytes,
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_info, v, "out_info") }
    })
}

fn replay(store: MmsbStore, target: Target, out_state: *mut MmsbState) -> Result<()> {
    need_out(out_state, "out_state")?;
    let st = handle::durable(store)?.state_at(target)?;
    let h = handle::insert(Object::State(Arc::new(st)));
    // SAFETY: the exported callers' contract: out_state is valid for one write.
    unsafe { out(out_state, h, "out_state") }
}

/// Rebuilds the state right after commit `lsn` (0 = the empty state) from the
/// checkpoints and log on disk and writes a read-only state handle into
/// `*out_state`: read it with the page functions (`mmsb_page_read`,
/// `mmsb_page_info`, `mmsb_page_list`, `mmsb_page_borrow`, ...), free it with
/// `mmsb_state_free`. Writes to it are `MMSB_ERR_READ_ONLY`. An LSN that is not
/// retained (pruned with its checkpoint and log segments, or beyond the last
/// commit) is `MMSB_ERR_NOT_FOUND`; `MMSB_DURABILITY_NONE` is `MMSB_ERR_UNSUPPORTED`.
///
/// # Safety
/// `out_state` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_replay_to_lsn(
    store: MmsbStore,
    lsn: u64,
    out_state: *mut MmsbState,
) -> i32 {
    call(|| replay(store, Target::Lsn(lsn), out_state))
}

/// Like `mmsb_replay_to_lsn`, to the state after the last commit whose
/// timestamp is at or before `timestamp_ns` (ns since the Unix epoch; before
/// the first retained commit: the oldest retained state).
///
/// # Safety
/// `out_state` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_replay_to_time(
    store: MmsbStore,
    timestamp_ns: u64,
    out_state: *mut MmsbState,
) -> i32 {
    call(|| replay(store, Target::Time(timestamp_ns), out_state))
}

/// Writes the LSN and commit timestamp a read-only state was rebuilt at.
///
/// # Safety
/// `out_lsn` and `out_timestamp_ns` are null or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn mmsb_state_info(
    state: MmsbState,
    out_lsn: *mut u64,
    out_timestamp_ns: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_lsn, "out_lsn")?;
        need_out(out_timestamp_ns, "out_timestamp_ns")?;
        let s = match handle::get(state, TAG_STATE)? {
            Object::State(s) => s,
            _ => return Err(Error::new(ErrorCode::Internal, "state tag on a non-state")),
        };
        // SAFETY: caller contract above; both checked non-null.
        unsafe {
            out(out_lsn, s.lsn(), "out_lsn")?;
            out(out_timestamp_ns, s.timestamp_ns(), "out_timestamp_ns")
        }
    })
}

/// Frees a read-only state. Borrows taken from it stay readable until released.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_state_free(state: MmsbState) -> i32 {
    call(|| handle::remove(state, TAG_STATE).map(|_| ()))
}

// ---------------------------------------------------------------- log, recovery, history

/// Scans the store's log on disk now and writes its totals into `*out_summary`.
/// `MMSB_DURABILITY_NONE` is `MMSB_ERR_UNSUPPORTED`.
///
/// # Safety
/// `out_summary` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_log_summary(
    store: MmsbStore,
    out_summary: *mut MmsbLogSummary,
) -> i32 {
    call(|| {
        need_out(out_summary, "out_summary")?;
        let s = handle::durable(store)?;
        let dir = s
            .dir()
            .ok_or_else(|| Error::new(ErrorCode::Unsupported, "an in-memory store has no log"))?;
        s.sync()?;
        let scan = tlog_reader::scan(
            &mmsb_core::vfs::RealVfs,
            &dir.join(mmsb_core::recovery::LOG_DIR),
            |_, _| Ok(()),
        )?;
        let m = &scan.summary;
        let v = MmsbLogSummary {
            segments: m.segments,
            commits: m.frames,
            records: m.records,
            first_lsn: m.first_lsn,
            last_lsn: m.last_lsn,
            stored_bytes: m.stored_bytes,
            raw_bytes: m.raw_bytes,
            compressed_frames: m.compressed_frames,
            compression_ratio: m.compression_ratio(),
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_summary, v, "out_summary") }
    })
}

/// Writes what recovery found when the store was opened into `*out_report`.
///
/// # Safety
/// `out_report` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_recovery_report(
    store: MmsbStore,
    out_report: *mut MmsbRecoveryReport,
) -> i32 {
    call(|| {
        need_out(out_report, "out_report")?;
        let s = handle::durable(store)?;
        let r = s.recovery_report();
        let v = MmsbRecoveryReport {
            lsn: r.lsn,
            timestamp_ns: r.timestamp_ns,
            commits_replayed: r.commits_replayed,
            bytes_replayed: r.bytes_replayed,
            torn_tail_bytes: r.torn_tail.as_ref().map_or(0, |c| c.bytes),
            corruption_bytes_dropped: r.corruption_accepted.as_ref().map_or(0, |c| c.bytes),
            has_checkpoint: r.checkpoint.is_some(),
            checkpoint_lsn: r.checkpoint.as_ref().map_or(0, |c| c.lsn),
            checkpoints_rejected: r.checkpoints_rejected.len() as u64,
            elapsed_ns: u64::try_from(r.elapsed.as_nanos()).unwrap_or(u64::MAX),
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_report, v, "out_report") }
    })
}

fn history(h: MmsbHistory) -> Result<Arc<History>> {
    match handle::get(h, TAG_HISTORY)? {
        Object::History(x) => Ok(x),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "history tag on a non-history",
        )),
    }
}

/// Lists the deltas page `page` received in commits `from_lsn..=to_lsn`
/// (inclusive; in LSN order), straight from the log, and writes a history
/// handle into `*out_history`: read it with `mmsb_history_count` and
/// `mmsb_history_entry`, free it with `mmsb_history_free`. A range that starts
/// before the log retained (pruned after a checkpoint) is `MMSB_ERR_NOT_FOUND`;
/// `from_lsn > to_lsn` is `MMSB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `out_history` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_page_history(
    store: MmsbStore,
    page: MmsbPageId,
    from_lsn: u64,
    to_lsn: u64,
    out_history: *mut MmsbHistory,
) -> i32 {
    call(|| {
        need_out(out_history, "out_history")?;
        if from_lsn > to_lsn {
            return Err(Error::invalid(format!(
                "from_lsn {from_lsn} is after to_lsn {to_lsn}"
            )));
        }
        let entries = handle::durable(store)?.page_history(PageId(page), from_lsn, to_lsn)?;
        let h = handle::insert(Object::History(Arc::new(History { entries })));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_history, h, "out_history") }
    })
}

/// Writes the number of entries of a page history into `*out_count`.
///
/// # Safety
/// `out_count` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_history_count(history_h: MmsbHistory, out_count: *mut u64) -> i32 {
    call(|| {
        need_out(out_count, "out_count")?;
        let n = history(history_h)?.entries.len() as u64;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_count, n, "out_count") }
    })
}

/// Writes entry `index` (0-based) of a page history: its commit's LSN and
/// timestamp, and a new delta handle holding a copy of the delta (the caller
/// frees it with `mmsb_delta_free`). An index past the end is
/// `MMSB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// Each out-pointer is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_history_entry(
    history_h: MmsbHistory,
    index: u64,
    out_lsn: *mut u64,
    out_timestamp_ns: *mut u64,
    out_delta: *mut MmsbDelta,
) -> i32 {
    call(|| {
        need_out(out_lsn, "out_lsn")?;
        need_out(out_timestamp_ns, "out_timestamp_ns")?;
        need_out(out_delta, "out_delta")?;
        let h = history(history_h)?;
        let e = usize::try_from(index)
            .ok()
            .and_then(|i| h.entries.get(i))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "history entry {index} does not exist ({} entries)",
                    h.entries.len()
                ))
            })?;
        let d = handle::insert(Object::Delta(Arc::new(Mutex::new(e.delta.clone()))));
        // SAFETY: caller contract above; all checked non-null.
        unsafe {
            out(out_lsn, e.lsn, "out_lsn")?;
            out(out_timestamp_ns, e.timestamp_ns, "out_timestamp_ns")?;
            out(out_delta, d, "out_delta")
        }
    })
}

/// Frees a page history.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_history_free(history_h: MmsbHistory) -> i32 {
    call(|| handle::remove(history_h, TAG_HISTORY).map(|_| ()))
}

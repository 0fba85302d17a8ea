//! `mmsb bench log`: the durable store's log against SQLite and plain file I/O.
//!
//! Every case measures MMSB and its yardstick in the same run, on the same
//! disk (temporary directories under `--dir`, default the system temp dir),
//! with the same payloads, alternating the two `--reps` times and keeping the
//! best of each (interference on a shared machine only ever slows a run down).
//!
//! The payloads: a pool of deltas, each a random blob of 64 B to 4 KiB at a
//! random offset of one of 64 pages of 64 KiB. MMSB commits `N` of them as one
//! [`Store::commit`]; SQLite runs one transaction of `N` `INSERT OR REPLACE`
//! into `deltas(page, offset, bytes)`.
//!
//! Cases:
//!
//! * `immediate/b<N>/t<T>`: commits/s under immediate durability (`fsync`
//!   before a commit returns, concurrent commits share one: group commit), `N`
//!   deltas per commit, `T` committer threads, for a fixed time. Yardstick:
//!   SQLite in WAL mode, `synchronous=FULL`, one connection shared by the `T`
//!   threads behind a mutex (SQLite admits one writer at a time). Target 2x.
//!   The log is written with direct I/O where the disk takes it (the JSON's
//!   `log_io` says which). With one committer the same reps also measure, for
//!   context (and at two committers the first of them too): MMSB with
//!   direct I/O turned off (`mmsb_buffered_io_...`); the
//!   store's own work per commit with no sync (buffered durability); and the
//!   disk's *raw flush ceiling* — one thread writing the same frame bytes
//!   into a pre-zeroed file, each made durable before the next, nothing else:
//!   `pwrite` + `fdatasync` (`flush_ceiling_buffered/b<N>`) and `O_DIRECT`
//!   block rewrites with `pwritev2(RWF_DSYNC)` (`flush_ceiling_direct/b<N>`).
//!   Their ratio to SQLite shows how far 2x is physically possible: MMSB at
//!   one committer pays at least one flush per commit. Every immediate case
//!   also records `commits_per_sync` (group commit's batching), and the
//!   machine note the load average when the run began and ended.
//! * `log_append_nofsync/b<N>`: MB/s the log writer appends (the append
//!   bandwidth the issue names): each frame's records are made untimed, then
//!   [`TLogWriter::append`] is timed (encoding, CRC32C, one positional write;
//!   no fsync). Same chunks, same yardstick as the next case. Target 0.7x.
//! * `append_nofsync/b<N>`: MB/s of log appended by whole store commits under
//!   [`Durability::Buffered`] with a one-hour sync delay (so no `fsync` while
//!   measured; the segment limit is raised so no roll syncs either), one
//!   thread, a fixed number of bytes. Timed is each [`Store::commit`] call
//!   (validation, frame encoding with its CRC32C, the write, applying the
//!   deltas to the pages), summed; each commit's deltas are made just before
//!   it, untimed, as a caller makes them. Yardstick: `write(2)`
//!   (`File::write_all`) of the same bytes in the same chunks (one per commit
//!   frame), each chunk likewise copied into the write buffer just before its
//!   timed `write`. Reported for context, no target: it includes the store's
//!   own work (validation, applying the deltas to the pages) beside the log.
//! * `recovery_replay`: GB/s of log replayed by [`Store::open`] with no
//!   checkpoint (a log of `--replay-mib` written first, page cache warm). The
//!   target is absolute, 1 GB/s, so the yardstick is that constant; the
//!   printed line also shows `read(2)` of the same files for context.
//! * `checkpoint_write`, `checkpoint_verify`: GB/s of a checkpoint of
//!   `--checkpoint-mib` of pages written (temp file, fsync, rename, dir fsync),
//!   and loaded and verified (SHA-256, per-page CRC32C, pages rebuilt). No
//!   target. Yardsticks: `write(2)` + `fsync` of the same bytes, and `read(2)`
//!   of the same file.

use clap::Args;
use mmsb_core::checkpoint;
use mmsb_core::tlog_frame;
use mmsb_core::tlog_record::Record;
use mmsb_core::tlog_writer::TLogWriter;
use mmsb_core::vfs::RealVfs;
use mmsb_core::{Delta, Durability, Op, PageId, PageLocation, PageStore, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Arguments of `mmsb bench log`.
#[derive(Args)]
pub struct BenchLogArgs {
    /// Directory under which the temporary data directories are made (the disk measured).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds per measurement of the commit cases.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Alternating repetitions per case (the best of each side is reported).
    #[arg(long, default_value_t = 2)]
    pub reps: usize,
    /// MiB appended per measurement of the no-fsync append cases.
    #[arg(long, default_value_t = 128)]
    pub append_mib: u64,
    /// MiB of log written for the replay case.
    #[arg(long, default_value_t = 256)]
    pub replay_mib: u64,
    /// MiB of pages in the checkpoint cases.
    #[arg(long, default_value_t = 128)]
    pub checkpoint_mib: u64,
    /// Directory for log.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A CI-sized smoke run (numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Run only the cases whose name contains this (e.g. `immediate/b16`, `append`).
    #[arg(long)]
    pub only: Option<String>,
}

const PAGES: u64 = 64;
const PAGE_SIZE: u64 = 64 << 10;
const POOL: usize = 4096;

/// The shared payloads: (page index 0..PAGES, offset, bytes).
struct Pool {
    items: Vec<(u64, u64, Vec<u8>)>,
}

impl Pool {
    fn new(seed: u64) -> Pool {
        let mut rng = StdRng::seed_from_u64(seed);
        let items = (0..POOL)
            .map(|_| {
                let len = rng.gen_range(64..=4096u64);
                let page = rng.gen_range(0..PAGES);
                let off = rng.gen_range(0..=PAGE_SIZE - len);
                let mut b = vec![0u8; len as usize];
                rng.fill_bytes(&mut b);
                (page, off, b)
            })
            .collect();
        Pool { items }
    }

    fn item(&self, i: usize) -> &(u64, u64, Vec<u8>) {
        &self.items[i % POOL]
    }

    /// The ops of commit number `c` of `n` deltas, for pages `ids`.
    fn ops(&self, ids: &[PageId], start: usize, n: usize) -> Vec<Op> {
        (start..start + n)
            .map(|i| {
                let (p, off, b) = self.item(i);
                Op::Delta(Delta::dense(ids[*p as usize], *off, b.clone()))
            })
            .collect()
    }
}

/// A fresh, empty directory under `base` (the disk measured), removed on drop.
fn temp_dir(base: &Path, tag: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("mmsb-bench-log-{tag}-"))
        .tempdir_in(base)
        .map_err(|e| format!("creating a temporary directory in {}: {e}", base.display()))
}

fn es(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn open_store(dir: &Path, durability: Durability, segment_bytes: u64) -> Result<Store, String> {
    open_store_io(dir, durability, segment_bytes, true)
}

fn open_store_io(
    dir: &Path,
    durability: Durability,
    segment_bytes: u64,
    direct_io: bool,
) -> Result<Store, String> {
    let opts = StoreOptions {
        durability,
        segment_bytes,
        direct_io,
        ..StoreOptions::default()
    };
    Store::open(dir, opts).map_err(es)
}

/// Creates the benchmark's pages in one commit.
fn create_pages(s: &Store) -> Result<Vec<PageId>, String> {
    let ops = (0..PAGES)
        .map(|_| Op::CreatePage {
            size: PAGE_SIZE,
            location: PageLocation::Cpu,
        })
        .collect();
    Ok(s.commit(ops).map_err(es)?.created)
}

/// MMSB commits/s: `threads` committers of `n` deltas each, immediate
/// durability (direct I/O if `direct_io` and the disk takes it), `secs`.
/// Also returns whether the log was written with direct I/O, and the
/// commits per log sync (group commit's batching).
fn mmsb_commits(
    base: &Path,
    pool: &Pool,
    n: usize,
    threads: usize,
    secs: f64,
    direct_io: bool,
) -> Result<(f64, bool, f64), String> {
    let td = temp_dir(base, "mmsb")?;
    let store = open_store_io(td.path(), Durability::Immediate, 64 << 20, direct_io)?;
    let direct = store.stats().log_direct_io;
    let ids = create_pages(&store)?;
    let commits = AtomicU64::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (store, ids, commits, failure) = (&store, &ids, &commits, &failure);
            sc.spawn(move || {
                let mut i = t * 997;
                while Instant::now() < deadline {
                    if let Err(e) = store.commit(pool.ops(ids, i, n)) {
                        *failure.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                    i += n;
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let el = t0.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let st = store.stats();
    store.close().map_err(es)?;
    let per_sync = st.commits as f64 / st.log_syncs.max(1) as f64;
    Ok((commits.into_inner() as f64 / el, direct, per_sync))
}

/// The frames MMSB writes for the first `commits` commits of `n` deltas from the pool.
fn frames(pool: &Pool, n: usize, commits: usize) -> Result<Vec<Vec<u8>>, String> {
    frame_iter(pool, n, commits).collect()
}

/// The log records of commit `c`: `n` deltas from the pool.
fn commit_records(pool: &Pool, ids: &[PageId], c: usize, n: usize) -> Vec<Record> {
    pool.ops(ids, c * n, n)
        .into_iter()
        .map(|op| match op {
            Op::Delta(d) => Record::Delta(d),
            _ => unreachable!("the pool makes deltas only"),
        })
        .collect()
}

/// The frames of [`frames`], one at a time.
fn frame_iter(
    pool: &Pool,
    n: usize,
    commits: usize,
) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    let ids: Vec<PageId> = (1..=PAGES).map(PageId).collect();
    (0..commits).map(move |c| {
        let records = commit_records(pool, &ids, c, n);
        tlog_frame::encode(c as u64 + 2, 0, &records, false).map_err(es)
    })
}

/// Size of the pre-zeroed file the raw flush ceilings write into.
const CEILING_FILE: u64 = 64 << 20;

/// A file of `CEILING_FILE` zeros, written and synced (untimed).
fn zeroed_file(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("ceiling.log");
    let mut f = std::fs::File::create(&path).map_err(es)?;
    let z = vec![0u8; 1 << 20];
    for _ in 0..CEILING_FILE >> 20 {
        f.write_all(&z).map_err(es)?;
    }
    f.sync_all().map_err(es)?;
    Ok(path)
}

/// The raw flush ceiling: flushes/s of one thread writing the same frames one
/// after another into a pre-zeroed file on the same disk, each made durable
/// before the next, with nothing else (no encoding, no store), for `secs`.
/// Buffered: `pwrite` + `fdatasync` (what the log did before direct I/O).
/// Direct: through the same [`Vfs`](mmsb_core::vfs::Vfs) calls as the log's
/// direct path: an `O_DIRECT` file, the frame copied behind the partial last
/// block in an aligned buffer, one `pwritev2(RWF_DSYNC)` of the whole blocks.
fn raw_flush(base: &Path, frames: &[Vec<u8>], secs: f64, direct: bool) -> Result<f64, String> {
    use mmsb_core::tlog_direct::{align_down, AlignedBuf};
    use mmsb_core::vfs::Vfs;
    let td = temp_dir(base, "ceiling")?;
    let path = zeroed_file(td.path())?;
    // Buffered: a plain write handle (not O_APPEND, whose pwrite appends).
    let plain = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(es)?;
    let direct_file = if direct {
        Some(RealVfs.open_direct(&path).map_err(es)?)
    } else {
        None
    };
    let mut buf = AlignedBuf::with_capacity(1 << 20);
    let (mut pos, mut n, mut i) = (0u64, 0u64, 0usize);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let f = &frames[i % frames.len()];
        i += 1;
        if pos + f.len() as u64 + 4096 > CEILING_FILE {
            pos = 0;
            buf.clear();
        }
        if let Some(file) = &direct_file {
            buf.extend_from_slice(f);
            let start = align_down(pos);
            file.write_at_sync(start, buf.padded()).map_err(es)?;
            pos += f.len() as u64;
            let keep = (align_down(pos) - start) as usize;
            let tail = buf.as_slice()[keep..].to_vec();
            buf.clear();
            buf.extend_from_slice(&tail);
        } else {
            std::os::unix::fs::FileExt::write_all_at(&plain, f, pos).map_err(es)?;
            plain.sync_data().map_err(es)?;
            pos += f.len() as u64;
        }
        n += 1;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// Per-commit seconds of MMSB's own work on the commit path (validation,
/// frame encoding, the append, applying the deltas) with no sync: one thread
/// committing under buffered durability, `commits` commits of `n` deltas.
fn store_cpu(base: &Path, pool: &Pool, n: usize, commits: usize) -> Result<f64, String> {
    let (el, _) = mmsb_append(base, pool, n, commits)?;
    Ok(el / commits as f64)
}

fn sqlite_open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(es)?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(es)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (got {mode})"));
    }
    c.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS deltas(page INTEGER, offset INTEGER, bytes BLOB,
                                           PRIMARY KEY(page, offset));",
    )
    .map_err(es)?;
    Ok(c)
}

/// SQLite commits/s: `threads` committers of `n` rows each, WAL + synchronous=FULL, `secs`.
fn sqlite_commits(
    base: &Path,
    pool: &Pool,
    n: usize,
    threads: usize,
    secs: f64,
) -> Result<f64, String> {
    let td = temp_dir(base, "sqlite")?;
    let conn = Mutex::new(sqlite_open(&td.path().join("bench.db"))?);
    let commits = AtomicU64::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (conn, commits, failure) = (&conn, &commits, &failure);
            sc.spawn(move || {
                let mut i = t * 997;
                while Instant::now() < deadline {
                    let r = (|| -> rusqlite::Result<()> {
                        let mut c = conn.lock().unwrap();
                        let tx = c.transaction()?;
                        {
                            let mut st = tx.prepare_cached(
                                "INSERT OR REPLACE INTO deltas(page, offset, bytes) VALUES (?1, ?2, ?3)",
                            )?;
                            for k in i..i + n {
                                let (p, off, b) = pool.item(k);
                                st.execute(params![*p as i64, *off as i64, b])?;
                            }
                        }
                        tx.commit()
                    })();
                    if let Err(e) = r {
                        *failure.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                    i += n;
                    commits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let el = t0.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    Ok(commits.into_inner() as f64 / el)
}

/// The sizes of the frames MMSB writes for `commits` commits of `n` deltas from the pool.
fn frame_sizes(pool: &Pool, n: usize, commits: usize) -> Result<Vec<usize>, String> {
    frame_iter(pool, n, commits)
        .map(|f| f.map(|f| f.len()))
        .collect()
}

/// Seconds MMSB takes to commit `commits` commits of `n` deltas, buffered, no fsync while timed.
fn mmsb_append(base: &Path, pool: &Pool, n: usize, commits: usize) -> Result<(f64, u64), String> {
    let td = temp_dir(base, "mmsb-append")?;
    let store = open_store(
        td.path(),
        Durability::Buffered {
            max_delay: Duration::from_secs(3600),
        },
        1 << 40,
    )?;
    let ids = create_pages(&store)?;
    let before = store.stats();
    let mut el = Duration::ZERO;
    for c in 0..commits {
        // The caller makes its deltas (untimed), then commits them while they are fresh.
        let ops = pool.ops(&ids, c * n, n);
        let t0 = Instant::now();
        store.commit(ops).map_err(es)?;
        el += t0.elapsed();
    }
    let el = el.as_secs_f64();
    let after = store.stats();
    if after.log_syncs != before.log_syncs {
        return Err("the log was synced during the no-fsync append measurement".into());
    }
    store.close().map_err(es)?; // syncs, untimed, so the next case starts clean
    Ok((el, after.log_bytes - before.log_bytes))
}

/// Seconds the log writer alone takes to append `commits` frames of `n`
/// deltas (encoding, CRC32C, the positional write; no validation, no page
/// apply, no fsync): the log's own append bandwidth. Records are made just
/// before each append, untimed.
fn writer_append(base: &Path, pool: &Pool, n: usize, commits: usize) -> Result<(f64, u64), String> {
    let td = temp_dir(base, "writer-append")?;
    let vfs: std::sync::Arc<dyn mmsb_core::vfs::Vfs> = std::sync::Arc::new(RealVfs);
    let mut w = TLogWriter::create(vfs, td.path(), 1, 2, 1 << 40, false).map_err(es)?;
    let ids: Vec<PageId> = (1..=PAGES).map(PageId).collect();
    let mut el = Duration::ZERO;
    for c in 0..commits {
        let records = commit_records(pool, &ids, c, n);
        let t0 = Instant::now();
        w.append(c as u64 + 2, 0, &records).map_err(es)?;
        el += t0.elapsed();
    }
    Ok((el.as_secs_f64(), w.bytes_written()))
}

/// Seconds `write(2)` takes for the same chunks (then fsync, untimed).
fn file_append(base: &Path, chunks: &[usize], data: &[u8]) -> Result<f64, String> {
    let td = temp_dir(base, "write")?;
    let path = td.path().join("plain.log");
    let mut f = std::fs::File::create(&path).map_err(es)?;
    let mut el = Duration::ZERO;
    let mut pos = 0;
    let mut chunk = Vec::new();
    for &c in chunks {
        if pos + c > data.len() {
            pos = 0;
        }
        // The writer makes its bytes (untimed), then writes them while they are fresh.
        chunk.clear();
        chunk.extend_from_slice(&data[pos..pos + c]);
        let t0 = Instant::now();
        f.write_all(&chunk).map_err(es)?;
        el += t0.elapsed();
        pos += c;
    }
    let el = el.as_secs_f64();
    f.sync_data().map_err(es)?;
    Ok(el)
}

/// Writes `bytes` with write(2) in 1 MiB chunks and fsyncs; seconds.
fn write_fsync(path: &Path, bytes: u64, data: &[u8]) -> Result<f64, String> {
    let t0 = Instant::now();
    let mut f = std::fs::File::create(path).map_err(es)?;
    let mut left = bytes as usize;
    while left > 0 {
        let c = left.min(data.len());
        f.write_all(&data[..c]).map_err(es)?;
        left -= c;
    }
    f.sync_data().map_err(es)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Log bytes of every segment in a data directory, and seconds to read them all.
fn read_log(dir: &Path) -> Result<(u64, f64), String> {
    let log = dir.join("log");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&log)
        .map_err(es)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let t0 = Instant::now();
    let mut total = 0u64;
    for p in &names {
        total += std::fs::read(p).map_err(es)?.len() as u64;
    }
    Ok((total, t0.elapsed().as_secs_f64()))
}

struct Report {
    results: Vec<Value>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        yardstick: &str,
        yardstick_value: f64,
        ratio: f64,
        target: Option<f64>,
        extra: &str,
    ) -> &mut Value {
        let t = target.map_or("-".to_owned(), |t| t.to_string());
        println!(
            "log/{name:<24} {value:10.3} {unit:<9} {yardstick}: {yardstick_value:10.3}  {extra}ratio={ratio:.3} target={t}"
        );
        self.results.push(json!({
            "name": name,
            "value": round3(value),
            "unit": unit,
            "yardstick": yardstick,
            "yardstick_value": round3(yardstick_value),
            "ratio": round3(ratio),
            "target": target,
        }));
        let i = self.results.len() - 1;
        &mut self.results[i]
    }
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn most(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Runs the benchmark.
pub fn run(args: BenchLogArgs) -> Result<(), String> {
    let (secs, reps, append_mib, replay_mib, ckpt_mib) = if args.quick {
        (0.2, 1, 8, 16, 8)
    } else {
        (
            args.seconds,
            args.reps,
            args.append_mib,
            args.replay_mib,
            args.checkpoint_mib,
        )
    };
    if secs <= 0.0 || reps == 0 || append_mib == 0 || replay_mib == 0 || ckpt_mib == 0 {
        return Err("--seconds, --reps and the sizes must be positive".into());
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let load_start = crate::machine::load_average();
    let pool = Pool::new(0x4d4d_5342);
    println!(
        "mmsb bench log: dir {}, {secs} s per commit measurement, best of {reps} alternating reps; cpu {}",
        base.display(),
        crate::machine::cpu_name()
    );
    let mut rep = Report {
        results: Vec::new(),
    };
    let only = args.only.clone().unwrap_or_default();
    let want = |name: &str| name.contains(only.as_str());

    // 1. Immediate durability against SQLite WAL synchronous=FULL; at one
    // committer also the raw flush ceilings of the disk and MMSB's buffered
    // path, interleaved with the rest in the same reps.
    for n in [1usize, 16, 256] {
        let ceiling_frames = frames(&pool, n, (POOL / n).max(1))?;
        for t in [1usize, 2, 4, 8] {
            let name = format!("immediate/b{n}/t{t}");
            if !want(&name) {
                continue;
            }
            let (mut m, mut s, mut direct, mut per_sync) = (Vec::new(), Vec::new(), false, 0.0);
            let (mut mb, mut cb, mut cd, mut cpu) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let (v, d, ps) = mmsb_commits(&base, &pool, n, t, secs, true)?;
                if v >= most(&m) {
                    per_sync = ps;
                }
                m.push(v);
                direct = d;
                s.push(sqlite_commits(&base, &pool, n, t, secs)?);
                if t <= 2 {
                    mb.push(mmsb_commits(&base, &pool, n, t, secs, false)?.0);
                }
                if t == 1 {
                    cb.push(raw_flush(&base, &ceiling_frames, secs, false)?);
                    cd.push(raw_flush(&base, &ceiling_frames, secs, true)?);
                    cpu.push(store_cpu(&base, &pool, n, (4096 / n).max(64))?);
                }
            }
            let (mv, sv) = (most(&m), most(&s));
            let r = rep.add(
                &name,
                mv,
                "commits/s",
                "SQLite WAL synchronous=FULL commits/s",
                sv,
                mv / sv,
                Some(2.0),
                &format!(
                    "{} {per_sync:.2} commits/sync ",
                    if direct { "direct" } else { "buffered" }
                ),
            );
            r["log_io"] = json!(if direct { "direct" } else { "buffered" });
            r["commits_per_sync"] = json!(round3(per_sync));
            if t == 2 {
                let bv = most(&mb);
                r["mmsb_buffered_io_commits_per_s"] = json!(round3(bv));
                println!("    MMSB with direct_io off: {bv:.0} commits/s");
            }
            if t == 1 {
                let (bv, cbv, cdv, cpuv) = (most(&mb), most(&cb), most(&cd), best(&cpu));
                let ceiling = cbv.max(cdv);
                r["mmsb_buffered_io_commits_per_s"] = json!(round3(bv));
                r["raw_flush_ceiling_per_s"] = json!(round3(ceiling));
                r["fraction_of_ceiling"] = json!(round3(mv / ceiling));
                r["sqlite_fraction_of_ceiling"] = json!(round3(sv / ceiling));
                r["per_commit_us"] = json!({
                    "mmsb": round3(1e6 / mv),
                    "mmsb_buffered_io": round3(1e6 / bv),
                    "store_work_without_sync": round3(cpuv * 1e6),
                    "raw_flush_buffered": round3(1e6 / cbv),
                    "raw_flush_direct": round3(1e6 / cdv),
                    "sqlite": round3(1e6 / sv),
                });
                println!(
                    "    per commit: mmsb {:.1} us (buffered I/O {:.1}), store work w/o sync {:.1} us, raw flush buffered {:.1} us / direct {:.1} us, SQLite {:.1} us",
                    1e6 / mv, 1e6 / bv, cpuv * 1e6, 1e6 / cbv, 1e6 / cdv, 1e6 / sv
                );
                for (kind, v) in [("buffered", cbv), ("direct", cdv)] {
                    let c = rep.add(
                        &format!("flush_ceiling_{kind}/b{n}"),
                        v,
                        "flushes/s",
                        "SQLite WAL synchronous=FULL commits/s (1 thread)",
                        sv,
                        v / sv,
                        None,
                        "",
                    );
                    c["mmsb_fraction"] = json!(round3(mv / v));
                }
            }
        }
    }

    // 2. Append without fsync against write(2) of the same chunks.
    let mut data = vec![0u8; 64 << 20];
    StdRng::seed_from_u64(7).fill_bytes(&mut data);
    for n in [1usize, 16, 256] {
        if !want(&format!("append_nofsync/b{n}")) {
            continue;
        }
        let per_commit = frame_sizes(&pool, n, 64)?.iter().sum::<usize>() / 64;
        let commits = ((append_mib << 20) as usize / per_commit).max(1);
        let chunks = frame_sizes(&pool, n, commits)?;
        let bytes: usize = chunks.iter().sum();
        let (mut m, mut l, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps.max(2) {
            let (el, logged) = mmsb_append(&base, &pool, n, commits)?;
            if logged != bytes as u64 {
                return Err(format!(
                    "MMSB logged {logged} bytes, the yardstick writes {bytes}: the chunking differs"
                ));
            }
            m.push(el);
            let (el, logged) = writer_append(&base, &pool, n, commits)?;
            if logged != bytes as u64 {
                return Err(format!(
                    "the log writer wrote {logged} bytes, the yardstick writes {bytes}: the chunking differs"
                ));
            }
            l.push(el);
            w.push(file_append(&base, &chunks, &data)?);
        }
        let mb = bytes as f64 / 1e6;
        let (mv, lv, wv) = (mb / best(&m), mb / best(&l), mb / best(&w));
        rep.add(
            &format!("log_append_nofsync/b{n}"),
            lv,
            "MB/s",
            "write(2) of the same chunks MB/s",
            wv,
            lv / wv,
            Some(0.7),
            &format!("({commits} frames, {:.1} MiB) ", bytes as f64 / 1048576.0),
        );
        rep.add(
            &format!("append_nofsync/b{n}"),
            mv,
            "MB/s",
            "write(2) of the same chunks MB/s",
            wv,
            mv / wv,
            None,
            &format!("({commits} commits, {:.1} MiB) ", bytes as f64 / 1048576.0),
        );
    }

    // 3. Recovery replay of a log with no checkpoint.
    if want("recovery_replay") {
        let td = temp_dir(&base, "replay")?;
        let n = 16;
        let store = open_store(
            td.path(),
            Durability::Buffered {
                max_delay: Duration::from_secs(3600),
            },
            64 << 20,
        )?;
        let ids = create_pages(&store)?;
        let mut c = 0;
        while store.stats().log_bytes < replay_mib << 20 {
            store.commit(pool.ops(&ids, c * n, n)).map_err(es)?;
            c += 1;
        }
        store.close().map_err(es)?;
        let (mut o, mut r, mut bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..reps.max(2) {
            let t0 = Instant::now();
            let s = open_store(td.path(), Durability::Immediate, 64 << 20)?;
            o.push(t0.elapsed().as_secs_f64());
            bytes = s.recovery_report().bytes_replayed;
            if s.recovery_report().commits_replayed != c as u64 + 1 {
                return Err("recovery replayed a different number of commits".into());
            }
            s.close().map_err(es)?;
            r.push(read_log(td.path())?.1);
        }
        let gb = bytes as f64 / 1e9;
        let v = gb / best(&o);
        rep.add(
            "recovery_replay",
            v,
            "GB/s",
            "absolute target GB/s",
            1.0,
            v,
            Some(1.0),
            &format!(
                "({:.0} MiB, {c} commits; read(2) of the log {:.2} GB/s) ",
                bytes as f64 / 1048576.0,
                gb / best(&r)
            ),
        );
    }

    // 4. Checkpoint write and verify.
    if want("checkpoint_write") || want("checkpoint_verify") {
        let mut st = PageStore::new();
        let npages = (ckpt_mib << 20) / PAGE_SIZE;
        let mut pages = Vec::new();
        for i in 0..npages {
            let id = st.create_page(PAGE_SIZE, PageLocation::Cpu).map_err(es)?;
            let off = (i as usize * 4096) % (data.len() - PAGE_SIZE as usize);
            st.apply_delta(&Delta::dense(
                id,
                0,
                data[off..off + PAGE_SIZE as usize].to_vec(),
            ))
            .map_err(es)?;
            pages.push(st.page(id).map_err(es)?.clone());
        }
        let (mut w, mut wy, mut v, mut vy, mut fbytes) = (vec![], vec![], vec![], vec![], 0);
        for _ in 0..reps.max(2) {
            let td = temp_dir(&base, "ckpt")?;
            let t0 = Instant::now();
            let info = checkpoint::write(&RealVfs, td.path(), 1, 1, st.next_page_id(), &pages)
                .map_err(es)?;
            w.push(t0.elapsed().as_secs_f64());
            fbytes = info.file_bytes;
            let t0 = Instant::now();
            let loaded = checkpoint::load(&RealVfs, &info.path).map_err(es)?;
            v.push(t0.elapsed().as_secs_f64());
            if loaded.state.page_ids().len() != pages.len() {
                return Err("the checkpoint lost pages".into());
            }
            drop(loaded);
            let t0 = Instant::now();
            let n = std::fs::read(&info.path).map_err(es)?.len();
            vy.push(t0.elapsed().as_secs_f64());
            if n as u64 != fbytes {
                return Err("checkpoint size differs from its report".into());
            }
            wy.push(write_fsync(
                &td.path().join("plain"),
                fbytes,
                &data[..1 << 20],
            )?);
        }
        let gb = fbytes as f64 / 1e9;
        let extra = format!("({:.0} MiB) ", fbytes as f64 / 1048576.0);
        rep.add(
            "checkpoint_write",
            gb / best(&w),
            "GB/s",
            "write(2)+fsync of the same bytes GB/s",
            gb / best(&wy),
            best(&wy) / best(&w),
            None,
            &extra,
        );
        rep.add(
            "checkpoint_verify",
            gb / best(&v),
            "GB/s",
            "read(2) of the same file GB/s",
            gb / best(&vy),
            best(&vy) / best(&v),
            None,
            &extra,
        );
    }

    let mut machine = crate::machine::machine_json();
    // How loaded the box was: the one-minute load average when the run began and ended.
    machine["load_average_start"] = json!(load_start);
    machine["load_average_end"] = json!(crate::machine::load_average());
    let doc = json!({
        "group": "log",
        "date": crate::machine::today(),
        "machine": machine,
        "results": rep.results,
    });
    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("log.json");
    let text = serde_json::to_string_pretty(&doc).map_err(es)?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
